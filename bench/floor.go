package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FloorResult is the physical floor: what one loopback datagram costs.
type FloorResult struct {
	// Size is the datagram size in bytes.
	Size int `json:"size"`
	// Datagrams is how many the loop sent and received.
	Datagrams int64 `json:"datagrams"`
	// CPU is the loop's user and system time.
	CPU time.Duration `json:"cpu_ns"`
	// PerDatagram is CPU / Datagrams, in microseconds.
	PerDatagram float64 `json:"us_per_datagram"`
}

// RunFloor is the floor loop: on one OS thread, it sendto()s datagrams of
// size bytes from one loopback UDP socket to another and recv()s each, for
// about d, and returns the CPU time per datagram from getrusage. It is run
// in a child process pinned to the server's CPU (see MeasureFloor), so that
// the figure is the same CPU's cost of the least a UDP forwarder does with
// each packet: one send and one receive through the kernel.
func RunFloor(size int, d time.Duration) (FloorResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	open := func() (int, *unix.SockaddrInet4, error) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, nil, fmt.Errorf("bench: floor socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			unix.Close(fd)
			return -1, nil, fmt.Errorf("bench: floor bind: %w", err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			return -1, nil, fmt.Errorf("bench: floor getsockname: %w", err)
		}
		return fd, sa.(*unix.SockaddrInet4), nil
	}
	tx, _, err := open()
	if err != nil {
		return FloorResult{}, err
	}
	defer unix.Close(tx)
	rx, to, err := open()
	if err != nil {
		return FloorResult{}, err
	}
	defer unix.Close(rx)

	out := make([]byte, size)
	in := make([]byte, size+64)
	// Warm caches and the socket path before timing.
	for range 1000 {
		if err := floorOnce(tx, rx, out, in, to); err != nil {
			return FloorResult{}, err
		}
	}
	var before, after unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &before); err != nil {
		return FloorResult{}, fmt.Errorf("bench: floor getrusage: %w", err)
	}
	deadline := time.Now().Add(d)
	var n int64
	for time.Now().Before(deadline) {
		for range 1000 {
			if err := floorOnce(tx, rx, out, in, to); err != nil {
				return FloorResult{}, err
			}
		}
		n += 1000
	}
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &after); err != nil {
		return FloorResult{}, fmt.Errorf("bench: floor getrusage: %w", err)
	}
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()) - time.Duration(before.Utime.Nano()+before.Stime.Nano())
	return FloorResult{
		Size:        size,
		Datagrams:   n,
		CPU:         cpu,
		PerDatagram: float64(cpu) / float64(time.Microsecond) / float64(n),
	}, nil
}

func floorOnce(tx, rx int, out, in []byte, to *unix.SockaddrInet4) error {
	if err := unix.Sendto(tx, out, 0, to); err != nil {
		return fmt.Errorf("bench: floor sendto: %w", err)
	}
	m, _, err := unix.Recvfrom(rx, in, 0)
	if err != nil {
		return fmt.Errorf("bench: floor recv: %w", err)
	}
	if m != len(out) {
		return fmt.Errorf("bench: floor recv: %d bytes, sent %d", m, len(out))
	}
	return nil
}

// MeasureFloor runs the floor loop in a child process: command (this
// binary's hidden floor mode, which calls RunFloor and prints its result
// as JSON) with --size and --time, under `taskset -c cpu` when cpu >= 0.
func MeasureFloor(ctx context.Context, command []string, cpu, size int, d time.Duration) (FloorResult, error) {
	args := append(append([]string(nil), command...), "--size", strconv.Itoa(size), "--time", d.String())
	cmd, err := pinnedCommand(ctx, cpu, args)
	if err != nil {
		return FloorResult{}, err
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return FloorResult{}, fmt.Errorf("bench: floor child %q: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(errb.String()))
	}
	var r FloorResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return FloorResult{}, fmt.Errorf("bench: floor child output %q: %w", out.String(), err)
	}
	if r.Datagrams == 0 || r.PerDatagram <= 0 {
		return FloorResult{}, fmt.Errorf("bench: floor child measured nothing: %+v", r)
	}
	return r, nil
}

// pinnedCommand makes a command that runs args under `taskset -c cpu`, or
// unpinned when cpu < 0. taskset sets the affinity and then execs args, so
// the command's process is the target's and every thread it starts
// inherits the mask.
func pinnedCommand(ctx context.Context, cpu int, args []string) (*exec.Cmd, error) {
	if cpu < 0 {
		return exec.CommandContext(ctx, args[0], args[1:]...), nil
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return nil, fmt.Errorf("bench: pinning to CPU %d needs taskset (util-linux): %w", cpu, err)
	}
	return exec.CommandContext(ctx, ts, append([]string{"-c", strconv.Itoa(cpu)}, args...)...), nil
}
