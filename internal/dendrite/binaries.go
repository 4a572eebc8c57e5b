// Package dendrite gives tests a real Matrix homeserver: Dendrite, built
// once from the Go module proxy and cached, started fresh for each test on
// loopback with its own SQLite databases, with helpers to make users and
// rooms.
//
// The binaries live in $FOCUS_CACHE/dendrite-<version>/ (or
// $HOME/.cache/focus/dendrite-<version>/). When they are missing, the first
// test that needs them builds them with the go command, in a throwaway
// module, which takes a minute or two. When that fails, the test skips,
// except under CI=true, where it fails: a CI run that silently skips its
// Matrix tests would prove nothing.
package dendrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Version is the Dendrite release the tests run.
const Version = "v0.15.2"

// Module is Dendrite's Go module path.
const Module = "github.com/element-hq/dendrite"

// EnvCache names an environment variable that overrides the cache root,
// $HOME/.cache/focus.
const EnvCache = "FOCUS_CACHE"

// buildTimeout bounds a cold build. It takes about 90 s on two idle cores;
// a busy CI machine may take several times that.
const buildTimeout = 15 * time.Minute

// Binaries are the paths of the Dendrite programs the tests use.
type Binaries struct {
	Dir            string // the directory that holds all four
	Dendrite       string
	GenerateConfig string
	GenerateKeys   string
	CreateAccount  string
}

// commands are the Dendrite commands built, by name under cmd/.
var commands = []string{"dendrite", "generate-config", "generate-keys", "create-account"}

func binariesIn(dir string) Binaries {
	return Binaries{
		Dir:            dir,
		Dendrite:       filepath.Join(dir, "dendrite"),
		GenerateConfig: filepath.Join(dir, "generate-config"),
		GenerateKeys:   filepath.Join(dir, "generate-keys"),
		CreateAccount:  filepath.Join(dir, "create-account"),
	}
}

// complete reports whether every binary is in dir and executable.
func complete(dir string) bool {
	for _, c := range commands {
		fi, err := os.Stat(filepath.Join(dir, c))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// CacheRoot returns the directory under which cached tools are kept:
// $FOCUS_CACHE, or else $HOME/.cache/focus.
func CacheRoot() (string, error) {
	if d := os.Getenv(EnvCache); d != "" {
		return filepath.Abs(d)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("dendrite: cache directory: set %s or HOME: %w", EnvCache, err)
	}
	return filepath.Join(home, ".cache", "focus"), nil
}

// CacheDir returns where the binaries of Version are kept.
func CacheDir() (string, error) {
	root, err := CacheRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "dendrite-"+Version), nil
}

// Build returns the cached binaries, building them first if they are
// missing. Progress notes go to progress, which may be nil.
//
// Several test binaries may call it at once: a lock file next to the cache
// lets one of them build while the others wait, and the binaries are built
// in a scratch directory that is renamed into place only when complete, so
// no one ever sees half a cache.
func Build(ctx context.Context, progress io.Writer) (Binaries, error) {
	if progress == nil {
		progress = io.Discard
	}
	dir, err := CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	if complete(dir) {
		return binariesIn(dir), nil
	}
	root := filepath.Dir(dir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("dendrite: cache: %w", err)
	}
	unlock, err := lockFile(ctx, dir+".lock", func() {
		fmt.Fprintf(progress, "dendrite: waiting for another process that is building Dendrite %s into %s\n", Version, dir)
	})
	if err != nil {
		return Binaries{}, fmt.Errorf("dendrite: lock the cache: %w", err)
	}
	defer unlock()
	if complete(dir) {
		return binariesIn(dir), nil
	}

	if realLock {
		// Scratch directories of builds that were killed midway.
		stale, _ := filepath.Glob(filepath.Join(root, ".dendrite-"+Version+".build-*"))
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	}

	goTool, err := exec.LookPath("go")
	if err != nil {
		return Binaries{}, fmt.Errorf("dendrite: building Dendrite needs the go command: %w", err)
	}
	scratch, err := os.MkdirTemp(root, ".dendrite-"+Version+".build-")
	if err != nil {
		return Binaries{}, fmt.Errorf("dendrite: cache: %w", err)
	}
	defer os.RemoveAll(scratch)

	fmt.Fprintf(progress, "dendrite: building Dendrite %s into %s (once; about two minutes)\n", Version, dir)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	tools := filepath.Join(scratch, "tools")
	out := filepath.Join(scratch, "bin")
	for _, d := range []string{tools, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return Binaries{}, fmt.Errorf("dendrite: cache: %w", err)
		}
	}
	get := []string{"get"}
	build := []string{"build", "-ldflags=-s -w", "-o", out + string(os.PathSeparator)}
	for _, c := range commands {
		get = append(get, Module+"/cmd/"+c+"@"+Version)
		build = append(build, Module+"/cmd/"+c)
	}
	for _, args := range [][]string{{"mod", "init", "tools"}, get, build} {
		if err := runGo(ctx, goTool, tools, args); err != nil {
			return Binaries{}, err
		}
	}
	if !complete(out) {
		return Binaries{}, fmt.Errorf("dendrite: go build left an incomplete set of binaries in %s", out)
	}
	// Only an incomplete leftover can be here: a complete one would have
	// been returned above, and we hold the lock.
	if err := os.RemoveAll(dir); err != nil {
		return Binaries{}, fmt.Errorf("dendrite: cache: %w", err)
	}
	if err := os.Rename(out, dir); err != nil {
		return Binaries{}, fmt.Errorf("dendrite: cache: %w", err)
	}
	fmt.Fprintf(progress, "dendrite: built Dendrite %s in %v\n", Version, time.Since(start).Round(time.Second))
	return binariesIn(dir), nil
}

// runGo runs the go command in dir with the caller's environment (so its
// GOPROXY, GOFLAGS and caches), outside any workspace, without cgo.
func runGo(ctx context.Context, goTool, dir string, args []string) error {
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return fmt.Errorf("dendrite: go %s: %w\n%s", strings.Join(args, " "), err, tail(out.String(), 40))
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Require returns the binaries, building them if needed, or ends the test:
// it fails under CI=true and skips otherwise.
func Require(tb testing.TB) Binaries {
	tb.Helper()
	b, err := Build(tb.Context(), tbWriter{tb})
	if err == nil {
		return b
	}
	hint := fmt.Sprintf("Dendrite %s is built with the go command from the module proxy into $%s (default ~/.cache/focus); see docs/testing.md", Version, EnvCache)
	if errors.Is(err, context.Canceled) {
		tb.Fatalf("%v", err)
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%v\nCI=true, so this is a failure, not a skip. %s", err, hint)
	}
	tb.Skipf("%v\nskipping the Matrix test. %s", err, hint)
	return Binaries{}
}

// tbWriter logs each write to a test.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
