// Package web serves the reference page: a small WHIP publisher and WHEP
// viewer that runs in any current browser, with no build step and no
// resources from elsewhere. It lets a person try a focus without other tools,
// and the browser tests drive it through its query string and the hooks it
// puts on window.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// contentSecurityPolicy lets the page run its own script and style and talk
// to its own origin, and nothing else: no inline script, no other hosts, no
// framing. The favicon is an empty data: URL, so img-src allows data:.
// media-src covers the MediaStreams that the page attaches to its videos.
const contentSecurityPolicy = "default-src 'none'; " +
	"script-src 'self'; " +
	"style-src 'self'; " +
	"img-src 'self' data:; " +
	"media-src 'self' blob: mediastream:; " +
	"connect-src 'self'; " +
	"base-uri 'none'; " +
	"form-action 'none'; " +
	"frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// contentTypes lists the only file types the page uses. A file with another
// extension is not served, so adding one is a conscious change here.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// Handler serves the reference page at "/" and its script and style sheet
// next to it. Any other path is 404, so the handler can be mounted at "/" of a
// mux that routes the WHIP and WHEP paths elsewhere.
func Handler() http.Handler {
	assets, err := load(static)
	if err != nil {
		// The files are compiled in; failing here means the build is broken,
		// and the test of this package catches it.
		panic(fmt.Sprintf("web: %v", err))
	}
	return &handler{assets: assets}
}

// load reads every embedded file under static/ into memory once.
func load(fsys fs.FS) (map[string]asset, error) {
	assets := make(map[string]asset)
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("embedded file %q has no known content type", p)
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("read %q: %w", p, err)
		}
		sum := sha256.Sum256(body)
		assets["/"+strings.TrimPrefix(p, "static/")] = asset{
			body:        body,
			contentType: ct,
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := assets["/index.html"]; !ok {
		return nil, fmt.Errorf("embedded files have no index.html")
	}
	return assets, nil
}

type handler struct {
	assets map[string]asset
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path
	if name == "/" {
		name = "/index.html"
	}
	a, ok := h.assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", a.contentType)
	// no-cache still lets the browser keep a copy, but it must revalidate,
	// so a new build of the focus shows its new page at once.
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", a.etag)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	if a.contentType == contentTypes[".html"] {
		hdr.Set("Content-Security-Policy", contentSecurityPolicy)
		// The page asks for the camera and the microphone, and for nothing
		// else a browser can grant.
		hdr.Set("Permissions-Policy", "camera=(self), microphone=(self), geolocation=(), payment=(), usb=()")
	}
	// ServeContent answers If-None-Match with 304 and handles HEAD and Range.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}
