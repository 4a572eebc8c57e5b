//go:build linux

package browser

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs finds every process of one Chromium. Most are in the process group
// that the browser leads, but the crash handler (chrome_crashpad_handler)
// double-forks into a session of its own. All of them carry the browser's
// private directory on their command line (--user-data-dir, or the crash
// database under XDG_CONFIG_HOME), so that finds them all.
//
// Processes that lose their parent are handed to the nearest "subreaper".
// Without one they go to PID 1, which on some CI and container machines
// never reaps them, and they linger as <defunct> entries that pgrep still
// lists. So the test process makes itself a subreaper, and reaps the ones
// that are ours.
type procs struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	seen map[int]bool // every pid found so far, to reap them once dead
}

// prepare runs on the browser's command before it starts. The browser leads
// a process group of its own, so one signal reaches all its helpers, and the
// kernel kills it if the thread that started it dies with the test binary.
func (p *procs) prepare(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// PR_SET_CHILD_SUBREAPER is a property of the whole process and setting
	// it again is harmless. Its only other effect is that orphans of other
	// children of the test binary become zombies here instead of at PID 1.
	// If the kernel refuses, cleanup still kills everything; only reaping
	// is lost.
	const prSetChildSubreaper = 36
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
}

func (p *procs) leader() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// note remembers pids so that killAll can reap them after they die, when
// their command lines are gone.
func (p *procs) note(ps []proc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = make(map[int]bool)
	}
	for _, q := range ps {
		p.seen[q.pid] = true
	}
}

func (p *procs) wasSeen(pid int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[pid]
}

// running lists the live processes of the browser.
func (p *procs) running(dir string) []int {
	ps := find(p.leader(), dir)
	p.note(ps)
	var pids []int
	for _, q := range ps {
		if !q.dead() {
			pids = append(pids, q.pid)
		}
	}
	return pids
}

// killAll kills what is left of the browser, reaps what it can, and waits
// until none of it runs.
func (p *procs) killAll(dir string, timeout time.Duration) error {
	pgid := p.leader()
	self := os.Getpid()
	deadline := time.Now().Add(timeout)
	quiet := 0
	for {
		if pgid > 0 {
			// ESRCH once the group is empty; nothing to do about it.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		ps := find(pgid, dir)
		p.note(ps)
		var live []int
		busy := false
		for _, q := range ps {
			switch {
			case !q.dead():
				_ = syscall.Kill(q.pid, syscall.SIGKILL)
				live = append(live, q.pid)
				busy = true
			case q.ppid == self && q.pid != pgid:
				// The leader is os/exec's to reap; reaping it here would
				// steal its exit status.
				var ws syscall.WaitStatus
				_, _ = syscall.Wait4(q.pid, &ws, syscall.WNOHANG, nil)
				busy = true
			}
		}
		// Zombies that died after they were last listed by command line.
		for _, q := range zombieChildren(self) {
			if q.pid != pgid && p.wasSeen(q.pid) {
				var ws syscall.WaitStatus
				_, _ = syscall.Wait4(q.pid, &ws, syscall.WNOHANG, nil)
				busy = true
			}
		}
		if !busy {
			// A helper forked just before the kill shows up a little later,
			// so look a few times before believing everything is gone.
			if quiet++; quiet == 3 {
				return nil
			}
		} else {
			quiet = 0
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chromium processes %v still run %v after kill", live, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type proc struct {
	pid, ppid, pgid int
	state           byte
}

func (q proc) dead() bool { return q.state == 'Z' || q.state == 'X' }

// find lists the processes, live or dead, in group pgid or with a path
// under dir in an argument of their command line.
func find(pgid int, dir string) []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	mark := []byte(dir + string(os.PathSeparator))
	self := os.Getpid()
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		q, ok := stat(pid)
		if !ok {
			continue
		}
		if pgid > 0 && q.pgid == pgid {
			out = append(out, q)
			continue
		}
		// A zombie's command line is empty; killAll finds those by pid.
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
			if bytes.Contains(arg, mark) {
				out = append(out, q)
				break
			}
		}
	}
	return out
}

// zombieChildren lists the dead, unreaped children of pid.
func zombieChildren(parent int) []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if q, ok := stat(pid); ok && q.ppid == parent && q.dead() {
			out = append(out, q)
		}
	}
	return out
}

// stat reads /proc/pid/stat.
func stat(pid int) (proc, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proc{}, false
	}
	// The command name is in parentheses and may hold spaces, so split
	// after its closing parenthesis: "state ppid pgrp ...".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return proc{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return proc{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgid, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return proc{}, false
	}
	return proc{pid: pid, ppid: ppid, pgid: pgid, state: f[0][0]}, true
}

// remaining lists every process of the browser that still exists, zombies
// included: what pgrep would show.
func (p *procs) remaining(dir string) []int {
	var pids []int
	for _, q := range find(p.leader(), dir) {
		pids = append(pids, q.pid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid := range p.seen {
		if _, ok := stat(pid); ok && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
