package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// envPinned marks a process that PinSelf already re-executed on its CPU;
// envCPUs carries the number of CPUs the process could use before.
const (
	envPinned = "FOCUS_BENCH_PINNED_CPU"
	envCPUs   = "FOCUS_BENCH_CPUS"
)

// PinSelf pins the whole generator, every thread it has and will have, to
// cpu. Setting the affinity of a running Go program is not enough: the
// runtime's threads that already exist keep their masks. So PinSelf sets
// the mask of the calling thread and execs this binary again with the same
// arguments: the new program's first thread starts with the mask, and
// every thread the runtime later starts inherits it (and Go sizes
// GOMAXPROCS to it). The re-executed process finds envPinned set, checks
// its mask and returns nil. On success in the first process PinSelf does
// not return.
func PinSelf(cpu int) error {
	if os.Getenv(envPinned) == strconv.Itoa(cpu) {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			return fmt.Errorf("bench: read own CPU affinity: %w", err)
		}
		if set.Count() != 1 || !set.IsSet(cpu) {
			return fmt.Errorf("bench: re-executed to run on CPU %d, but the affinity mask has %d CPUs", cpu, set.Count())
		}
		return nil
	}
	if err := CheckCPU(cpu); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: find own binary to re-execute pinned: %w", err)
	}
	env := append(os.Environ(), envPinned+"="+strconv.Itoa(cpu), envCPUs+"="+strconv.Itoa(UsableCPUs()))
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("bench: pin to CPU %d: %w", cpu, err)
	}
	err = syscall.Exec(exe, os.Args, env)
	runtime.UnlockOSThread()
	return fmt.Errorf("bench: re-execute %s pinned to CPU %d: %w", exe, cpu, err)
}

// Pinned reports whether this process is one PinSelf re-executed.
func Pinned() bool { return os.Getenv(envPinned) != "" }

// CheckCPU reports whether this process may run on cpu.
func CheckCPU(cpu int) error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return fmt.Errorf("bench: read CPU affinity: %w", err)
	}
	if cpu < 0 || !set.IsSet(cpu) {
		return fmt.Errorf("bench: CPU %d is not one this process may use (it may use %d CPUs)", cpu, set.Count())
	}
	return nil
}

// UsableCPUs is the number of CPUs this process may run on, or could
// before PinSelf narrowed it to one.
func UsableCPUs() int {
	if n, err := strconv.Atoi(os.Getenv(envCPUs)); err == nil && Pinned() && n > 0 {
		return n
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return runtime.NumCPU()
	}
	return set.Count()
}
