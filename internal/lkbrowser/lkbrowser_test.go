package lkbrowser

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/focus-sfu/focus/internal/browser"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestInstall fetches (or finds) the bundle and checks it is the pinned
// release's UMD build.
func TestInstall(t *testing.T) {
	path := Require(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b[:min(len(b), 4096)], []byte("LivekitClient")) {
		t.Errorf("%s does not define window.LivekitClient", path)
	}
	if err := checkVersion(filepath.Join(filepath.Dir(path), "package.json")); err != nil {
		t.Error(err)
	}
}

func tarball(t *testing.T, entries map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpack(t *testing.T) {
	all := map[string]string{
		"package/dist/" + Bundle: "bundle",
		"package/package.json":   `{"name":"livekit-client","version":"` + Version + `"}`,
		"package/LICENSE":        "license",
		"package/README.md":      "not taken",
	}
	dir := filepath.Join(t.TempDir(), "out")
	if err := unpack(tarball(t, all), dir); err != nil {
		t.Fatal(err)
	}
	if !complete(dir) {
		t.Error("incomplete after unpack")
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err == nil {
		t.Error("unpack took a file it does not need")
	}
	if err := checkVersion(filepath.Join(dir, "package.json")); err != nil {
		t.Error(err)
	}

	delete(all, "package/LICENSE")
	if err := unpack(tarball(t, all), filepath.Join(t.TempDir(), "out")); err == nil {
		t.Error("a tarball without LICENSE unpacked")
	}
	if err := unpack([]byte("not gzip"), filepath.Join(t.TempDir(), "out")); err == nil {
		t.Error("garbage unpacked")
	}
}

func TestServe(t *testing.T) {
	s := Start(t)
	for _, c := range []struct{ path, want string }{
		{"/", "app.js"},
		{"/app.js", "window.lkStats"},
		{"/" + Bundle, "LivekitClient"},
	} {
		res, err := http.Get(s.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(b), c.want) {
			t.Errorf("GET %s: %s, %d bytes, want %q in them", c.path, res.Status, len(b), c.want)
		}
	}
	u := s.PageURL("ws://127.0.0.1:1", "tok", url.Values{"log": {"debug"}})
	q, _ := url.Parse(u)
	if got := q.Query(); got.Get("url") != "ws://127.0.0.1:1" || got.Get("token") != "tok" || got.Get("log") != "debug" {
		t.Errorf("PageURL = %s", u)
	}
}

// TestPageInChromium: the page loads the bundle in a real browser and
// says, on the page and in window.lk, that it cannot reach a server that
// is not there.
func TestPageInChromium(t *testing.T) {
	b := browser.New(t)
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := b.NewPage(ctx, s.PageURL("ws://127.0.0.1:9", "not-a-jwt", nil))
	if err != nil {
		t.Fatal(err)
	}
	var version string
	if err := p.Eval(ctx, "window.LivekitClient.version", &version); err != nil {
		t.Fatal(err)
	}
	if version != Version {
		t.Errorf("LivekitClient.version = %q, want %q", version, Version)
	}
	if err := p.WaitFor(ctx, "window.lk.state === 'error' && window.lk.errors.length > 0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var errs []string
	if err := p.Eval(ctx, "window.lk.errors", &errs); err != nil {
		t.Fatal(err)
	}
	t.Logf("the page says: %q", errs)
	if !strings.HasPrefix(errs[0], "start: ") {
		t.Errorf("errors %q, want one from start", errs)
	}
}
