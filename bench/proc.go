package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which Linux fixes at 100 on every architecture Go supports.
const clockTick = 10 * time.Millisecond

// ErrProcFormat is returned for /proc contents that do not parse.
var ErrProcFormat = errors.New("bench: unexpected /proc format")

// ParseStatCPU returns utime+stime from the contents of /proc/<pid>/stat:
// the CPU time of every thread the process has had, in clock ticks.
func ParseStatCPU(stat []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may itself hold
	// spaces and parentheses; the fields after the last ')' start with
	// field 3, state.
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("%w: stat without ')'", ErrProcFormat)
	}
	fields := bytes.Fields(stat[end+1:])
	// utime and stime are fields 14 and 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("%w: stat has %d fields after the name", ErrProcFormat, len(fields))
	}
	u, err1 := strconv.ParseUint(string(fields[utime]), 10, 64)
	s, err2 := strconv.ParseUint(string(fields[stime]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%w: utime/stime: %w", ErrProcFormat, err)
	}
	return time.Duration(u+s) * clockTick, nil
}

// ParseStatusRSS returns VmRSS from the contents of /proc/<pid>/status, in
// bytes.
func ParseStatusRSS(status []byte) (int64, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("%w: VmRSS line %q", ErrProcFormat, line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: VmRSS: %w", ErrProcFormat, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("%w: no VmRSS line (a kernel thread, or a zombie)", ErrProcFormat)
}

// ProcCPU is the CPU time process pid has used so far ("self" for this
// process).
func ProcCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of process %s: %w", pid, err)
	}
	return ParseStatCPU(b)
}

// ProcRSS is the resident set size of process pid, in bytes.
func ProcRSS(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, fmt.Errorf("bench: rss of process %s: %w", pid, err)
	}
	return ParseStatusRSS(b)
}

// ParseUDPDrops returns RcvbufErrors + SndbufErrors from the contents of
// /proc/net/snmp: datagrams the kernel dropped, in this network namespace,
// because a socket's receive or send buffer was full.
func ParseUDPDrops(snmp []byte) (int64, error) {
	var names, values []string
	for line := range bytes.SplitSeq(snmp, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("Udp:"))
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(string(rest))
		} else {
			values = strings.Fields(string(rest))
			break
		}
	}
	if len(names) == 0 || len(names) != len(values) {
		return 0, fmt.Errorf("%w: no Udp: header and values in snmp", ErrProcFormat)
	}
	var sum int64
	found := 0
	for i, n := range names {
		if n != "RcvbufErrors" && n != "SndbufErrors" {
			continue
		}
		v, err := strconv.ParseInt(values[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: Udp %s: %w", ErrProcFormat, n, err)
		}
		sum += v
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("%w: snmp lacks Udp RcvbufErrors or SndbufErrors", ErrProcFormat)
	}
	return sum, nil
}

// UDPDrops reads ParseUDPDrops from /proc/net/snmp.
func UDPDrops() (int64, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("bench: udp counters: %w", err)
	}
	return ParseUDPDrops(b)
}
