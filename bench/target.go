package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Target is an SFU under test. Start brings up a fresh server for each run
// (or, for a server the bench does not own, attaches to it).
type Target interface {
	Name() string
	Start(ctx context.Context) (Server, error)
}

// Server is one running SFU of a Target.
type Server interface {
	// PID is the server's process, whose CPU and memory the bench reads;
	// 0 when unknown.
	PID() int
	// Version names the server build, for the report.
	Version() string
	// Publish is where publisher p POSTs its offer.
	Publish(p PublisherSpec) (Request, error)
	// Subscribe is where subscriber connection s POSTs its recvonly offer
	// to watch pub.
	Subscribe(s SubscriberSpec, pub Published) (Request, error)
	// Shared reports whether the server outlives the run, so that the
	// bench must DELETE its sessions.
	Shared() bool
	Close() error
}

// Published is a connected publisher, as a subscriber's request needs it.
type Published struct {
	Spec PublisherSpec
	// Resource is the absolute URL of the publisher's WHIP resource, ID its
	// last path element (focus's session ID).
	Resource, ID string
}

// process is a server the bench started: pinned, with its output kept in a
// log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	dir     string // removed on close, unless it is the user's log dir
	rmDir   bool
	exited  chan struct{}
	waitErr error

	mu   sync.Mutex
	tail []string // last lines of output
}

// startProcess starts args pinned to cpu, in dir, with stdout and stderr
// copied to dir/<name>.log. Each line is also passed to onLine, if set,
// until it returns true.
func startProcess(name string, cpu int, dir string, rmDir bool, args []string, env []string, onLine func(string) bool) (*process, error) {
	cmd, err := pinnedCommand(context.Background(), cpu, args)
	if err != nil {
		return nil, err
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	// Its own process group, so that a terminal's ^C reaches the bench,
	// which then stops the server in order; and SIGTERM should the bench
	// die without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	p := &process{name: name, cmd: cmd, dir: dir, rmDir: rmDir, exited: make(chan struct{}),
		logPath: filepath.Join(dir, name+".log")}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %s log: %w", name, err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: start %s (%s): %w", name, strings.Join(cmd.Args, " "), err)
	}
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		watching := onLine != nil
		for sc.Scan() {
			line := sc.Text()
			_, _ = logf.WriteString(line + "\n")
			p.mu.Lock()
			if p.tail = append(p.tail, line); len(p.tail) > 20 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
			if watching && onLine(line) {
				watching = false
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.waitErr = cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// failure describes an early exit or a start-up that went wrong, with the
// end of the log.
func (p *process) failure(what string) error {
	p.mu.Lock()
	tail := strings.Join(p.tail, "\n  ")
	p.mu.Unlock()
	select {
	case <-p.exited:
		return fmt.Errorf("bench: %s %s: exited (%v); log %s ends:\n  %s", p.name, what, p.waitErr, p.logPath, tail)
	default:
		return fmt.Errorf("bench: %s %s; log %s ends:\n  %s", p.name, what, p.logPath, tail)
	}
}

// stop asks the server to shut down (SIGTERM), kills it after grace, and
// removes its directory unless it is kept.
func (p *process) stop(grace time.Duration) error {
	var err error
	select {
	case <-p.exited:
		err = p.failure("stopped before the end of the run")
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.rmDir {
		_ = os.RemoveAll(p.dir)
	}
	return err
}

// serverDir is the directory of one server's files: a new directory under
// logDir when it is set (kept), otherwise a temporary one (removed).
func serverDir(logDir, name string) (dir string, remove bool, err error) {
	if logDir == "" {
		dir, err = os.MkdirTemp("", "focus-bench-"+name+"-")
		return dir, true, err
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return "", false, fmt.Errorf("bench: log dir: %w", err)
	}
	dir, err = os.MkdirTemp(logDir, name+"-"+time.Now().Format("150405")+"-")
	return dir, false, err
}

// freePort finds a port free for network ("tcp" or "udp") on loopback.
// Another process could take it before the server binds it; on this
// otherwise quiet machine that is unlikely, and the start-up would then
// fail loudly.
func freePort(network string) (int, error) {
	switch network {
	case "tcp":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("bench: free tcp port: %w", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("bench: free udp port: %w", err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	return 0, errors.New("bench: freePort: network must be tcp or udp")
}

// commandVersion runs args and returns the first line of its output.
func commandVersion(args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := bytes.Cut(bytes.TrimSpace(out), []byte("\n"))
	return string(line)
}
