// Package browser drives the Chromium that Debian ships (apt-get install -y
// chromium) from Go tests, through chromedp. It starts one headless Chromium
// per Browser with a fixed set of flags that turn on the fake camera and
// microphone and let WebRTC reach a focus on loopback, opens tabs, evaluates
// JavaScript in them, and records their console so a failing test can show
// what the page said.
//
// It never downloads a browser. When Chromium is missing the test skips,
// except under CI=true, where it fails: a CI run that silently skips its
// browser tests would prove nothing.
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// EnvChromium names an environment variable that overrides DefaultPath.
const EnvChromium = "FOCUS_CHROMIUM"

// DefaultPath is where Debian's chromium package puts the browser.
const DefaultPath = "/usr/bin/chromium"

// installHint tells a person how to get the browser.
const installHint = "install it with: sudo apt-get install -y chromium (or set " + EnvChromium + " to a Chromium binary)"

// Flags returns the command-line flags of every Chromium this package
// starts, apart from --user-data-dir, which is fresh for each browser, and
// what chromedp itself adds to talk to the browser (--remote-debugging-pipe
// and the first tab, about:blank).
func Flags() []string {
	return []string{
		"--headless=new",
		// Grant camera and microphone without a prompt, and feed them a
		// synthetic picture and tone.
		"--use-fake-ui-for-media-stream",
		"--use-fake-device-for-media-stream",
		"--no-sandbox",
		"--disable-gpu",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--no-first-run",
		// WebRTC to a focus that listens on 127.0.0.1.
		"--allow-loopback-in-peer-connection",
		// Real host candidates rather than .local mDNS names, which a focus
		// cannot resolve.
		"--disable-features=WebRtcHideLocalIpsWithMdns",
		"--autoplay-policy=no-user-gesture-required",
		"--disable-quic",
	}
}

// Find returns the path of the Chromium binary: $FOCUS_CHROMIUM when set,
// else DefaultPath. It fails when that file is missing or not executable.
func Find() (string, error) {
	path := os.Getenv(EnvChromium)
	from := EnvChromium
	if path == "" {
		path, from = DefaultPath, "default path"
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("browser: chromium (%s) %q: %w", from, path, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("browser: chromium (%s) %q is not an executable file", from, path)
	}
	return path, nil
}

// Require returns the Chromium path, or ends the test: it fails under
// CI=true and skips otherwise.
func Require(tb testing.TB) string {
	tb.Helper()
	path, err := Find()
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%v. CI=true, so this is a failure, not a skip: %s", err, installHint)
	}
	tb.Skipf("%v; skipping the browser test. To run it, %s", err, installHint)
	return ""
}

// Browser is one running Chromium process. Make it with New; it stops when
// the test ends, or earlier with Close.
type Browser struct {
	tb      testing.TB
	root    string // private directory; dataDir and the XDG dirs are in it
	dataDir string
	output  *tailBuffer
	procs   procs

	allocCancel context.CancelFunc
	ctx         context.Context // the chromedp context of the first tab
	cancel      context.CancelFunc

	mu     sync.Mutex
	pages  []*Page
	closed bool
	err    error
}

// startTimeout bounds the start of the browser and of each tab. A cold
// Chromium on a busy two-core machine starts in about a second.
const startTimeout = 30 * time.Second

// New starts a headless Chromium for the test, or skips or fails the test
// as Require does. Every process of the browser is killed when the test
// ends, and on failure the test log gets each tab's console and the tail of
// the browser's own output.
func New(tb testing.TB) *Browser {
	tb.Helper()
	path := Require(tb)
	// Everything the browser writes stays under one private directory: the
	// profile, and the crash database and caches that Chromium puts under
	// the XDG directories, not under --user-data-dir. TempDir registers its
	// removal before our cleanup, so it runs after the browser is gone.
	root := tb.TempDir()
	b := &Browser{
		tb:      tb,
		root:    root,
		dataDir: filepath.Join(root, "profile"),
		output:  newTailBuffer(64 << 10),
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(b.dataDir),
		chromedp.Env("XDG_CONFIG_HOME="+filepath.Join(root, "config"), "XDG_CACHE_HOME="+filepath.Join(root, "cache")),
		chromedp.CombinedOutput(b.output),
		chromedp.ModifyCmdFunc(b.procs.prepare),
	}
	for _, f := range Flags() {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if hasValue {
			opts = append(opts, chromedp.Flag(name, value))
		} else {
			opts = append(opts, chromedp.Flag(name, true))
		}
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	b.allocCancel = allocCancel
	b.ctx, b.cancel = chromedp.NewContext(allocCtx, chromedp.WithErrorf(b.errorf))
	tb.Cleanup(func() {
		if tb.Failed() {
			b.logDiagnostics()
		}
		if err := b.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})

	// The first Run starts the process and binds it to b.ctx, so it must
	// not carry a deadline; bound it from outside instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(b.ctx) }()
	select {
	case err := <-started:
		if err != nil {
			tb.Fatalf("browser: start %s: %v\nchromium output:\n%s", path, err, b.output.String())
		}
	case <-time.After(startTimeout):
		b.cancel()
		tb.Fatalf("browser: %s did not start within %v\nchromium output:\n%s", path, startTimeout, b.output.String())
	}
	// Note the processes now, while their command lines tell whose they
	// are, so that Close can reap them even if they die on their own first.
	b.procs.running(b.root)
	return b
}

// errorf receives chromedp's complaints about messages it could not handle.
// They are rare and worth seeing next to a failure.
func (b *Browser) errorf(format string, args ...any) {
	fmt.Fprintf(b.output, "chromedp: "+format+"\n", args...)
}

// Close stops the browser and kills any of its processes that are left. It
// is safe to call more than once; New calls it at the end of the test.
func (b *Browser) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.err
	}
	b.closed = true
	pages := b.pages
	b.mu.Unlock()

	for _, p := range pages {
		p.Close()
	}
	// Cancel closes the browser gracefully and waits for it; the allocator
	// then waits for the process to be reaped.
	done := make(chan error, 1)
	go func() { done <- chromedp.Cancel(b.ctx) }()
	var cancelErr error
	select {
	case cancelErr = <-done:
	case <-time.After(10 * time.Second):
		cancelErr = errors.New("graceful close took over 10 s")
	}
	b.allocCancel()
	err := b.procs.killAll(b.root, 10*time.Second)
	if err != nil {
		err = fmt.Errorf("browser: close: %w", err)
	} else if cancelErr != nil && !errors.Is(cancelErr, context.Canceled) {
		// A browser that had to be killed is still a clean stop for a test,
		// but say so in the log.
		b.tb.Logf("browser: close: %v (processes were killed)", cancelErr)
	}
	b.mu.Lock()
	b.err = err
	b.mu.Unlock()
	return err
}

// DataDir is the browser's --user-data-dir.
func (b *Browser) DataDir() string { return b.dataDir }

// failureOutputLines is how many lines of Chromium's own output a failed
// test prints.
const failureOutputLines = 20

// Output returns the tail of what Chromium wrote on stdout and stderr.
func (b *Browser) Output() string { return b.output.String() }

func (b *Browser) logDiagnostics() {
	b.mu.Lock()
	pages := append([]*Page(nil), b.pages...)
	b.mu.Unlock()
	for _, p := range pages {
		lines := p.Console()
		if len(lines) == 0 {
			b.tb.Logf("browser: tab %s: console is empty", p.url)
			continue
		}
		b.tb.Logf("browser: tab %s: console:\n  %s", p.url, strings.Join(lines, "\n  "))
	}
	if out := strings.TrimSpace(b.output.String()); out != "" {
		// The last lines only: a failed test's own messages come before
		// this, and a CI log that keeps a window of the output must not
		// lose them to Chromium's chatter.
		lines := strings.Split(out, "\n")
		b.tb.Logf("browser: chromium output (last lines):\n%s", strings.Join(lines[max(0, len(lines)-failureOutputLines):], "\n"))
	}
}

// Page is one tab.
type Page struct {
	b      *Browser
	url    string
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the console reader ends

	mu      sync.Mutex
	console []string
	closed  bool
}

// NewPage opens url in a new tab (in a window of its own, so it is never a
// hidden background tab that Chromium throttles) and waits until its
// document is parsed and its deferred scripts ran (DOMContentLoaded). The
// console of the tab is recorded from before the navigation.
func (b *Browser) NewPage(ctx context.Context, url string) (*Page, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("browser: new page %s: browser is closed", url)
	}
	b.mu.Unlock()

	tabCtx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{b: b, url: url, ctx: tabCtx, cancel: cancel, done: make(chan struct{})}

	// The first use of a tab context creates the tab and binds its event
	// loop to that context, so again bound it from outside.
	stop := context.AfterFunc(ctx, cancel)
	messages := chromedp.Console(tabCtx)
	if !stop() {
		cancel()
		return nil, fmt.Errorf("browser: open tab for %s: %w", url, ctx.Err())
	}
	go func() {
		defer close(p.done)
		for m, err := range messages {
			if err != nil {
				return
			}
			p.addConsole(formatConsole(m))
		}
	}()

	b.mu.Lock()
	b.pages = append(b.pages, p)
	b.mu.Unlock()

	if err := p.navigate(ctx, url); err != nil {
		// The tab stays registered, so a failing test still logs its console.
		return nil, fmt.Errorf("browser: open %s: %w", url, err)
	}
	return p, nil
}

func formatConsole(m chromedp.ConsoleMessage) string {
	s := m.String()
	if m.URL != "" {
		s += fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
	}
	if m.IsException() && m.Stack != nil {
		for _, f := range m.Stack.CallFrames {
			s += fmt.Sprintf("\n    at %s (%s:%d:%d)", f.FunctionName, f.URL, f.LineNumber+1, f.ColumnNumber+1)
		}
	}
	return s
}

func (p *Page) addConsole(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// A page that logs in a loop must not eat the test's memory.
	const maxLines = 2000
	if len(p.console) == maxLines {
		copy(p.console, p.console[1:])
		p.console = p.console[:maxLines-1]
	}
	p.console = append(p.console, time.Now().Format("15:04:05.000")+" "+line)
}

// Console returns what the tab wrote to its console so far: console calls,
// uncaught exceptions and browser log entries (such as failed loads),
// oldest first.
func (p *Page) Console() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.console...)
}

// URL is the address the page was opened with.
func (p *Page) URL() string { return p.url }

// navigate loads url and waits for its DOMContentLoaded. It does not wait
// for the load event, as chromedp.Navigate does: a media element delays
// that event until it has data, so a page that attaches a MediaStream which
// never gets a frame (a viewer of an empty room) would never "load".
func (p *Page) navigate(ctx context.Context, url string) error {
	var (
		mu     sync.Mutex
		loaded = make(map[cdp.LoaderID]bool)
		signal = make(chan struct{}, 1)
	)
	lctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	// Listen before navigating: the event can come before the reply.
	err := chromedp.Listen(lctx, func(ev any) {
		if e, ok := ev.(*page.EventLifecycleEvent); ok && e.Name == "DOMContentLoaded" {
			mu.Lock()
			loaded[e.LoaderID] = true
			mu.Unlock()
			select {
			case signal <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		return err
	}
	res, err := run(ctx, p, func(ctx context.Context, t *chromedp.Target) (page.NavigateResult, error) {
		return cdp.Call(ctx, t, page.Navigate, page.NavigateParams{URL: url})
	})
	switch {
	case err != nil:
		return err
	case res.ErrorText != "":
		return errors.New(res.ErrorText)
	case res.LoaderID == "":
		return nil // same-document navigation: nothing new to load
	}
	for {
		mu.Lock()
		done := loaded[res.LoaderID]
		mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-signal:
		case <-ctx.Done():
			return fmt.Errorf("waiting for DOMContentLoaded: %w", ctx.Err())
		}
	}
}

// run runs an action on the tab, bounded by ctx. The tab's own context must
// not be replaced by ctx (that would close the tab when ctx ends), so ctx
// only cancels a context derived from it.
func run[T any](ctx context.Context, p *Page, a chromedp.Action[T]) (T, error) {
	rctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	v, err := chromedp.Run(rctx, a)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return v, err
}

// Eval evaluates the JavaScript expression js in the page and decodes its
// JSON value into out, unless out is nil. A promise is awaited, so js may be
// an async call. An exception in js is an error that carries its message.
func (p *Page) Eval(ctx context.Context, js string, out any) error {
	raw, err := run(ctx, p, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("browser: eval %s: %w", short(js), err)
	}
	if out == nil {
		return nil
	}
	if len(raw) == 0 {
		return fmt.Errorf("browser: eval %s: the value is undefined", short(js))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("browser: eval %s: decode %s: %w", short(js), short(string(raw)), err)
	}
	return nil
}

// pollInterval is how often WaitFor evaluates its condition.
const pollInterval = 200 * time.Millisecond

// WaitFor evaluates the boolean JavaScript expression js until it is true,
// for at most timeout. An expression that throws counts as false, so it may
// refer to things the page has not made yet. The error on timeout says what
// the last evaluation gave.
func (p *Page) WaitFor(ctx context.Context, js string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var last error
	for {
		var ok bool
		err := p.Eval(ctx, "!!("+js+")", &ok)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = errors.New("the expression is false")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("browser: waited %v for %s in %s: %w", time.Since(start).Round(time.Millisecond), js, p.url, last)
		case <-time.After(pollInterval):
		}
	}
}

// Screenshot saves a PNG of the whole page, beyond the window if it is
// longer, to path, creating its directory.
func (p *Page) Screenshot(ctx context.Context, path string) error {
	png, err := run(ctx, p, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		return fmt.Errorf("browser: screenshot of %s: %w", p.url, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("browser: screenshot of %s: %w", p.url, err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return fmt.Errorf("browser: screenshot of %s: %w", p.url, err)
	}
	return nil
}

// Close closes the tab. The browser closes every tab it still has when it
// closes, so calling this is optional.
func (p *Page) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	<-p.done
}

// short keeps long scripts readable in error messages.
func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const max = 120
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
