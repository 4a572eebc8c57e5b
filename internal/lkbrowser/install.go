// Package lkbrowser gives browser tests LiveKit's own JavaScript client,
// livekit-client from npm, and a small page that uses it: the page joins a
// room with a token from its URL, publishes the fake camera and microphone,
// shows what it receives, and reports the receiving side's getStats() to
// the test through window hooks.
//
// The package is fetched once with npm (`npm pack`, which downloads the
// published tarball and nothing else), checked against the registry's
// sha512 pinned here, and its self-contained UMD bundle is kept in
// $FOCUS_CACHE/livekit-client-<version>/ (or
// $HOME/.cache/focus/livekit-client-<version>/). When npm or the registry
// cannot be had the test skips, except under CI=true, where it fails.
package lkbrowser

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/dendrite"
)

// Version is the livekit-client release the tests run. Element Call 0.26
// bundles a 2.x client too; this is the newest 2.x on the registry when it
// was pinned.
const Version = "2.23.0"

// Integrity is the registry's dist.integrity of livekit-client@Version
// (`npm view livekit-client@2.23.0 dist.integrity`). The tarball npm
// downloads must match it.
const Integrity = "sha512-j9Kg86nJjBjNFUD+ukp2jwMCGa0k+YD5gU//RzAM+ZY3pbG631QCte7fQjwqWMmtBzhDJL9nKYuOLMv/9IbAxg=="

// Bundle is the file of the package the page loads: the UMD build, which
// carries all its dependencies and defines window.LivekitClient.
const Bundle = "livekit-client.umd.js"

// files are taken from the tarball (under its package/ directory) into the
// cache.
var files = map[string]string{
	"package/dist/" + Bundle: Bundle,
	"package/package.json":   "package.json",
	"package/LICENSE":        "LICENSE",
}

// installTimeout bounds npm. A warm npm cache answers in under a second
// and a cold download of the 3 MB tarball takes a few.
const installTimeout = 5 * time.Minute

// CacheDir returns where the bundle of Version is kept: under the same
// cache root as the other tools the tests build ($FOCUS_CACHE, or
// $HOME/.cache/focus).
func CacheDir() (string, error) {
	root, err := dendrite.CacheRoot()
	if err != nil {
		return "", fmt.Errorf("lkbrowser: %w", err)
	}
	return filepath.Join(root, "livekit-client-"+Version), nil
}

// complete reports whether dir holds every file taken from the tarball.
func complete(dir string) bool {
	for _, name := range files {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			return false
		}
	}
	return true
}

// Install returns the path of the cached bundle, fetching it first if it
// is missing. Progress notes go to progress, which may be nil.
//
// Several test binaries may install at once. Each fetches into a scratch
// directory of its own and renames it into place; a loser of that race
// finds the winner's copy, so no one ever sees half a cache.
func Install(ctx context.Context, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	if complete(dir) {
		return filepath.Join(dir, Bundle), nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("lkbrowser: fetching livekit-client needs npm (Node.js): %w", err)
	}
	root := filepath.Dir(dir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("lkbrowser: cache: %w", err)
	}
	scratch, err := os.MkdirTemp(root, ".livekit-client-"+Version+".fetch-")
	if err != nil {
		return "", fmt.Errorf("lkbrowser: cache: %w", err)
	}
	defer os.RemoveAll(scratch)

	fmt.Fprintf(progress, "lkbrowser: fetching livekit-client@%s with npm into %s (once)\n", Version, dir)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	tgz, err := npmPack(ctx, npm, scratch)
	if err != nil {
		return "", err
	}
	out := filepath.Join(scratch, "out")
	if err := unpack(tgz, out); err != nil {
		return "", err
	}
	if err := checkVersion(filepath.Join(out, "package.json")); err != nil {
		return "", err
	}
	if err := os.Rename(out, dir); err != nil {
		// Another process may have put a complete copy there first; an
		// incomplete leftover is replaced.
		if complete(dir) {
			return filepath.Join(dir, Bundle), nil
		}
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			return "", fmt.Errorf("lkbrowser: cache: %w", rmErr)
		}
		if err := os.Rename(out, dir); err != nil {
			return "", fmt.Errorf("lkbrowser: cache: %w", err)
		}
	}
	fmt.Fprintf(progress, "lkbrowser: fetched livekit-client@%s in %v\n", Version, time.Since(start).Round(time.Millisecond))
	return filepath.Join(dir, Bundle), nil
}

// npmPack downloads the package's tarball into dir with `npm pack`, which
// runs no scripts and installs no dependencies, and checks it against
// Integrity. It returns the tarball's contents.
func npmPack(ctx context.Context, npm, dir string) ([]byte, error) {
	args := []string{"pack", "livekit-client@" + Version, "--pack-destination", dir, "--json", "--ignore-scripts", "--no-fund", "--no-audit"}
	cmd := exec.CommandContext(ctx, npm, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("lkbrowser: npm %s: %w\n%s", strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	var packed []struct {
		Filename  string `json:"filename"`
		Integrity string `json:"integrity"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &packed); err != nil || len(packed) != 1 {
		return nil, fmt.Errorf("lkbrowser: npm pack printed %q (%v), want one package", lastLines(stdout.String(), 5), err)
	}
	tgz, err := os.ReadFile(filepath.Join(dir, filepath.Base(packed[0].Filename)))
	if err != nil {
		return nil, fmt.Errorf("lkbrowser: npm pack: %w", err)
	}
	sum := sha512.Sum512(tgz)
	if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != Integrity {
		return nil, fmt.Errorf("lkbrowser: livekit-client@%s tarball is %s, want %s", Version, got, Integrity)
	}
	return tgz, nil
}

// checkVersion reads the unpacked package.json.
func checkVersion(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("lkbrowser: %w", err)
	}
	var pkg struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return fmt.Errorf("lkbrowser: package.json: %w", err)
	}
	if pkg.Name != "livekit-client" || pkg.Version != Version {
		return fmt.Errorf("lkbrowser: the tarball holds %s@%s, want livekit-client@%s", pkg.Name, pkg.Version, Version)
	}
	return nil
}

// EnvCI names the variable that turns a missing dependency into a failure.
const envCI = "CI"

// Require returns the path of the bundle, fetching it if needed, or ends
// the test: it fails under CI=true and skips otherwise.
func Require(tb testing.TB) string {
	tb.Helper()
	path, err := Install(tb.Context(), tbWriter{tb})
	if err == nil {
		return path
	}
	if errors.Is(err, context.Canceled) {
		tb.Fatalf("%v", err)
	}
	dir, _ := CacheDir()
	hint := fmt.Sprintf("livekit-client@%s is fetched with `npm pack` from the npm registry into %s; see docs/testing.md", Version, dir)
	if os.Getenv(envCI) == "true" {
		tb.Fatalf("%v\nCI=true, so this is a failure, not a skip. %s", err, hint)
	}
	tb.Skipf("%v\nskipping the livekit-client test. %s", err, hint)
	return ""
}

// tbWriter logs each write to a test.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
