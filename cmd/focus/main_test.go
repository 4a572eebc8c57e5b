package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testVersion is stamped into the binary the tests build, to check -ldflags.
const testVersion = "v0.0.0-test"

// binary is the focus executable built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "focus-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "focus")
	build := exec.Command(goTool(), "build", "-o", binary, "-ldflags", "-X main.version="+testVersion, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building focus:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// focusCmd runs the built binary with args and env (on top of a clean
// environment, so the developer's FOCUS_* variables cannot leak in).
func focusCmd(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	return cmd
}

// runFocus runs the binary to completion.
func runFocus(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := focusCmd(ctx, env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("focus %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "focus.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersion(t *testing.T) {
	code, out, _ := runFocus(t, nil, "version")
	want := fmt.Sprintf("focus %s %s %s/%s\n", testVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if code != 0 || out != want {
		t.Errorf("focus version = %d %q, want 0 %q", code, out, want)
	}

	// Without -ldflags the version is "dev".
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"focus", "version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("run version = %d, stderr %q", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "focus dev go") {
		t.Errorf("run version printed %q, want focus dev go...", stdout.String())
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := runFocus(t, nil, "--help")
	if code != 0 {
		t.Fatalf("focus --help exited %d", code)
	}
	for _, want := range []string{"serve", "version"} {
		if !strings.Contains(out, want) {
			t.Errorf("focus --help lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runFocus(t, nil, "serve", "--help")
	if code != 0 {
		t.Fatalf("focus serve --help exited %d", code)
	}
	for _, want := range []string{
		"--config FILE", "$FOCUS_CONFIG",
		"--listen HOST:PORT", "$FOCUS_LISTEN",
		"--log-level LEVEL", "$FOCUS_LOG_LEVEL",
		"--log-format FORMAT", "$FOCUS_LOG_FORMAT",
		"--udp-port PORT", "$FOCUS_UDP_PORT",
		"--insecure-open", "$FOCUS_INSECURE_OPEN",
		"Exit codes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("focus serve --help lacks %q:\n%s", want, out)
		}
	}
}

func TestUsageAndConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	tests := []struct {
		name string
		env  []string
		args []string
		want string // in stderr
	}{
		{name: "unknown key in file", args: []string{"serve", "--config", writeConfig(t, "webrtc:\n  udp_prot: 1\n")}, want: `config: unknown key "webrtc.udp_prot"`},
		{name: "bad value in file", args: []string{"serve", "-c", writeConfig(t, "limits:\n  sessions_per_ip: lots\n")}, want: `config: limits.sessions_per_ip: expected an integer, got "lots"`},
		{name: "config from env", env: []string{"FOCUS_CONFIG=" + writeConfig(t, "log:\n  level: loud\n")}, args: []string{"serve"}, want: `config: log.level: "loud" is not one of`},
		{name: "missing file", args: []string{"serve", "--config", missing}, want: "config: cannot read " + missing},
		{name: "udp port flag out of range", args: []string{"serve", "--udp-port", "70000"}, want: "config: webrtc.udp_port: 70000 is out of range 0-65535"},
		{name: "udp port flag not a number", args: []string{"serve", "--udp-port", "many"}, want: `invalid value "many" for flag -udp-port`},
		{name: "udp port env not a number", env: []string{"FOCUS_UDP_PORT=many"}, args: []string{"serve"}, want: `"FOCUS_UDP_PORT"`},
		{name: "insecure env not a bool", env: []string{"FOCUS_INSECURE_OPEN=maybe"}, args: []string{"serve"}, want: `"FOCUS_INSECURE_OPEN"`},
		{name: "log level flag", args: []string{"serve", "--log-level", "loud"}, want: "config: log.level:"},
		{name: "log format env", env: []string{"FOCUS_LOG_FORMAT=xml"}, args: []string{"serve"}, want: "config: log.format:"},
		{name: "listen flag", args: []string{"serve", "--listen", "nonsense"}, want: `config: listen: "nonsense" is not host:port`},
		{name: "listen env", env: []string{"FOCUS_LISTEN=127.0.0.1:99999"}, args: []string{"serve"}, want: "config: listen:"},
		{name: "open on all interfaces", args: []string{"serve", "--listen", "0.0.0.0:0", "--udp-port", "0"}, want: "config: listen: \"0.0.0.0:0\" is not a loopback address"},
		{name: "flag overrides file into an error", args: []string{"serve", "-c", writeConfig(t, "listen: \"127.0.0.1:0\"\n"), "--listen", ":0", "--udp-port", "0"}, want: "config: listen: \":0\" is not a loopback address"},
		{name: "unknown flag", args: []string{"serve", "--lisen", "x"}, want: "flag provided but not defined: -lisen"},
		{name: "unknown command", args: []string{"frobnicate"}, want: `unknown command "frobnicate"`},
		{name: "stray argument", args: []string{"serve", "focus.yaml"}, want: `serve takes no arguments, got "focus.yaml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runFocus(t, tt.env, tt.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, errOut)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, errOut)
			}
			if strings.Contains(errOut+out, "USAGE:") {
				t.Errorf("printed the help page instead of one error line:\n%s%s", out, errOut)
			}
		})
	}
}

func TestPortInUseIsARuntimeError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, errOut := runFocus(t, nil, "serve", "--listen", ln.Addr().String(), "--udp-port", "0")
	if code != exitRuntime || !strings.Contains(errOut, "address already in use") {
		t.Errorf("exit %d, stderr %q; want %d and address already in use", code, errOut, exitRuntime)
	}
}

// focusProcess is a running focus serve.
type focusProcess struct {
	cmd   *exec.Cmd
	ready map[string]any   // the start-up log line
	early []map[string]any // the lines before it
	lines chan map[string]any
	done  chan error
}

// startFocus runs focus serve with JSON logs and waits for its start-up line.
func startFocus(t *testing.T, env []string, args ...string) *focusProcess {
	t.Helper()
	cmd := focusCmd(context.Background(), env, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &focusProcess{cmd: cmd, lines: make(chan map[string]any, 100), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"raw": sc.Text()}
			}
			p.lines <- m
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	timeout := time.After(15 * time.Second)
	for p.ready == nil {
		select {
		case m, ok := <-p.lines:
			if !ok {
				t.Fatalf("focus exited before it was ready: %v", <-p.done)
			}
			if _, has := m["url"]; has {
				p.ready = m
			} else {
				p.early = append(p.early, m)
			}
		case <-timeout:
			t.Fatal("focus did not log its url within 15 s")
		}
	}
	return p
}

// stop signals the process and checks it exits 0 within 5 s, returning the
// log lines after the start-up one.
func (p *focusProcess) stop(t *testing.T, sig os.Signal) []map[string]any {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	var rest []map[string]any
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-p.lines:
			if ok {
				rest = append(rest, m)
				continue
			}
			if err := <-p.done; err != nil {
				t.Fatalf("focus exited with %v after %v, want 0", err, time.Since(start))
			}
			return rest
		case <-deadline:
			t.Fatalf("focus still running 5 s after %v", sig)
		}
	}
}

func checkHealthz(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url + "healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("GET %shealthz = %d %q, want 200 ok", url, resp.StatusCode, body)
	}
}

func TestServeSIGTERM(t *testing.T) {
	p := startFocus(t, nil, "serve", "--listen", "127.0.0.1:0", "--udp-port", "0", "--log-format", "json")
	url, _ := p.ready["url"].(string)
	udp, _ := p.ready["udp"].(string)
	if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasSuffix(url, ":0/") {
		t.Errorf("start-up url = %q, want the bound 127.0.0.1 port", url)
	}
	if !strings.HasPrefix(udp, "127.0.0.1:") || strings.HasSuffix(udp, ":0") {
		t.Errorf("start-up udp = %q, want the chosen 127.0.0.1 port", udp)
	}
	if p.ready["mode"] != "open" || p.ready["level"] != "info" {
		t.Errorf("start-up line = %v, want level info and mode open", p.ready)
	}
	checkHealthz(t, url)
	rest := p.stop(t, syscall.SIGTERM)
	if len(rest) == 0 || rest[len(rest)-1]["message"] != "stopped" {
		t.Errorf("last log lines %v, want a final \"stopped\"", rest)
	}
}

// TestServeEnvAndFile starts from a config file, overrides part of it with
// environment variables and a flag, and stops with SIGINT.
func TestServeEnvAndFile(t *testing.T) {
	file := writeConfig(t, `
listen: "127.0.0.1:1"
webrtc:
  udp_port: 1
log:
  level: warn
  format: console
whip:
  tokens:
    - {token: secret, rooms: ["*"], publish: true}
`)
	p := startFocus(t,
		[]string{"FOCUS_CONFIG=" + file, "FOCUS_LISTEN=127.0.0.1:0", "FOCUS_UDP_PORT=0", "FOCUS_LOG_LEVEL=info", "FOCUS_LOG_FORMAT=console"},
		"serve", "--log-format", "json", // the flag beats the environment
	)
	if p.ready["mode"] != "tokens" {
		t.Errorf("mode = %v, want tokens from the file", p.ready["mode"])
	}
	url, _ := p.ready["url"].(string)
	if url == "http://127.0.0.1:1/" || p.ready["udp"] == "127.0.0.1:1" {
		t.Errorf("start-up line %v uses the file's ports, want FOCUS_LISTEN and FOCUS_UDP_PORT", p.ready)
	}
	checkHealthz(t, url)
	p.stop(t, os.Interrupt)
}

func TestServeInsecureOpen(t *testing.T) {
	p := startFocus(t, []string{"FOCUS_INSECURE_OPEN=true"},
		"serve", "--listen", "0.0.0.0:0", "--udp-port", "0", "--log-format", "json")
	if p.ready["mode"] != "insecure-open" {
		t.Errorf("mode = %v, want insecure-open", p.ready["mode"])
	}
	if url, _ := p.ready["url"].(string); !strings.HasPrefix(url, "http://localhost:") {
		t.Errorf("url = %q, want localhost for an all-interfaces listener", url)
	}
	warned := false
	for _, m := range p.early {
		msg, _ := m["message"].(string)
		warned = warned || m["level"] == "warn" && strings.HasPrefix(msg, "INSECURE")
	}
	if !warned {
		t.Errorf("no INSECURE warning before start-up: %v", p.early)
	}
	p.stop(t, syscall.SIGTERM)
}
