package focustest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/freeport"
)

// binary is the focus executable built once per test process.
var binary struct {
	once sync.Once
	path string
	err  error
}

// Binary builds cmd/focus once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		dir, err := os.MkdirTemp("", "focus-bin")
		if err != nil {
			binary.err = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		binary.path = filepath.Join(dir, "focus")
		build := exec.Command(goTool(), "build", "-o", binary.path, "./cmd/focus")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build ./cmd/focus: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// FreePort returns a loopback port that is free for both TCP and UDP now,
// for a process that must be told its port in advance (a mesh seed).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Process is a focus binary running as its own process, owned by one test.
type Process struct {
	// Name labels the process in the test's log.
	Name string
	// URL is the main listener's base URL, known once the focus is ready.
	URL string

	t       testing.TB
	config  string
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	log     *Log
}

// StartProcess runs `focus serve --config FILE` with config (YAML) until
// the test ends, and waits until it is ready. The config must log in
// JSON (log.format: json) so that the ready line can be read.
func StartProcess(t testing.TB, name, config string) *Process {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Process{Name: name, t: t, config: path, log: NewLog(t)}
	t.Cleanup(p.log.Report)
	p.start()
	t.Cleanup(p.Stop)
	return p
}

// start launches the process and waits for its ready line.
func (p *Process) start() {
	t := p.t
	t.Helper()
	cmd := exec.Command(Binary(t), "serve", "--config", p.config)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	// The focus logs on stderr; both streams are read as one.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		_ = out.Close()
		t.Fatalf("%s: start: %v", p.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	ready := make(chan string, 1)
	go func() {
		defer out.Close()
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			_, _ = fmt.Fprintf(p.log, "[%s] %s\n", p.Name, line)
			var ev struct {
				Message string `json:"message"`
				HTTP    string `json:"http"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.HTTP != "" && strings.HasPrefix(ev.Message, "focus is ready") {
				select {
				case ready <- ev.HTTP:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	select {
	case addr := <-ready:
		p.URL = "http://" + addr
	case <-p.done:
		t.Fatalf("%s exited before it was ready: %v", p.Name, p.exitErr)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%s was not ready within 30 s", p.Name)
	}
}

// Restart starts the process again with the same configuration, after
// Kill or Stop.
func (p *Process) Restart() {
	p.t.Helper()
	if !p.Exited() {
		p.t.Fatalf("%s: Restart while running", p.Name)
	}
	p.start()
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop ends the process with SIGTERM and fails the test unless it exits
// cleanly within 10 s. A process that has already ended is left alone.
func (p *Process) Stop() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		var exit *exec.ExitError
		if p.exitErr != nil && !errors.As(p.exitErr, &exit) {
			p.t.Errorf("%s: wait: %v", p.Name, p.exitErr)
		} else if p.exitErr != nil {
			p.t.Errorf("%s did not exit cleanly on SIGTERM: %v", p.Name, p.exitErr)
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s did not stop within 10 s of SIGTERM", p.Name)
	}
}

// Get fetches path from the process's main listener and decodes its JSON
// body into v.
func (p *Process) Get(ctx context.Context, path string, v any) error {
	return getJSON(ctx, p.URL+path, v)
}

// getJSON GETs url and decodes its JSON body into v; a status other than
// 200 is an error with the body's start.
func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}
