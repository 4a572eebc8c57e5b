//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package dendrite

import "context"

// realLock reports whether lockFile excludes other processes.
const realLock = false

// lockFile does not lock where flock is missing. Concurrent builds then
// duplicate work, but the rename into place still keeps the cache whole.
func lockFile(ctx context.Context, path string, waiting func()) (func(), error) {
	return func() {}, nil
}
