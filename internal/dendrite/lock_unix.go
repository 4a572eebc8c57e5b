//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package dendrite

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// realLock reports whether lockFile excludes other processes.
const realLock = true

// lockFile takes an exclusive flock on path, creating it if needed, and
// returns the function that releases it. It calls waiting once if another
// process holds the lock. The kernel drops the lock if the holder dies, so
// a crashed build never blocks the next one.
func lockFile(ctx context.Context, path string, waiting func()) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	told := false
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(fd, syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, err
		}
		if !told {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
