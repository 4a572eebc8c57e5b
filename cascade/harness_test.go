package cascade

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/internal/testclient"
	"github.com/focus-sfu/focus/mesh"
	"github.com/focus-sfu/focus/rtc"
	"github.com/focus-sfu/focus/whip"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testSecret is the trunk secret of the test foci.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// fakeMesh is a directory the test controls: the nodes it is told of,
// with the holdings their cascades report (or the test sets). It tells
// its listeners of every change at once, on the caller's goroutine.
type fakeMesh struct {
	mu        sync.Mutex
	nodes     map[string]*fakeNode
	listeners map[int]func()
	next      int
}

type fakeNode struct {
	info     mesh.NodeInfo
	holdings []mesh.Conference
}

func newFakeMesh() *fakeMesh {
	return &fakeMesh{nodes: make(map[string]*fakeNode), listeners: make(map[int]func())}
}

// set adds or replaces a node, alive, reached at url.
func (m *fakeMesh) set(name, url string) {
	m.mu.Lock()
	m.nodes[name] = &fakeNode{info: mesh.NodeInfo{Name: name, State: mesh.StateAlive, Identity: mesh.Identity{TrunkURL: url}}}
	m.mu.Unlock()
	m.changed()
}

// setState changes a node's state; a node not alive holds nothing.
func (m *fakeMesh) setState(name string, st mesh.NodeState) {
	m.mu.Lock()
	if n := m.nodes[name]; n != nil {
		n.info.State = st
	}
	m.mu.Unlock()
	m.changed()
}

// setHoldings replaces a node's holdings.
func (m *fakeMesh) setHoldings(name string, cs []mesh.Conference) {
	m.mu.Lock()
	if n := m.nodes[name]; n != nil {
		n.holdings = cs
	}
	m.mu.Unlock()
	m.changed()
}

func (m *fakeMesh) changed() {
	m.mu.Lock()
	fns := make([]func(), 0, len(m.listeners))
	for _, fn := range m.listeners {
		fns = append(fns, fn)
	}
	m.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// dir is the directory as node self sees it.
func (m *fakeMesh) dir(self string) mesh.Directory { return &fakeDir{m: m, self: self} }

type fakeDir struct {
	m    *fakeMesh
	self string
}

func (d *fakeDir) Self() string { return d.self }

func (d *fakeDir) Nodes() []mesh.NodeInfo {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	var out []mesh.NodeInfo
	for _, n := range d.m.nodes {
		info := n.info
		info.Self = info.Name == d.self
		info.Conferences = len(n.holdings)
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b mesh.NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (d *fakeDir) Node(name string) (mesh.NodeInfo, bool) {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	n := d.m.nodes[name]
	if n == nil {
		return mesh.NodeInfo{}, false
	}
	info := n.info
	info.Self = name == d.self
	return info, true
}

func (d *fakeDir) Holdings(name string) []mesh.Conference {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	n := d.m.nodes[name]
	if n == nil || !aliveState(n.info.State) {
		return nil
	}
	return slices.Clone(n.holdings)
}

func (d *fakeDir) OnChange(fn func()) func() {
	d.m.mu.Lock()
	id := d.m.next
	d.m.next++
	d.m.listeners[id] = fn
	d.m.mu.Unlock()
	return func() {
		d.m.mu.Lock()
		delete(d.m.listeners, id)
		d.m.mu.Unlock()
	}
}

// node is one in-process focus: engine, SFU, WHIP/WHEP and cascade on
// an httptest server.
type node struct {
	name    string
	url     string
	engine  *rtc.Engine
	sfu     *focus.SFU
	whip    *whip.Server
	cascade *Cascade
	hs      *httptest.Server
	log     *testLog
	// gone stops the node's holdings reaching the mesh, as when it was
	// killed.
	gone      atomic.Bool
	closeOnce sync.Once
}

type nodeOption func(*Options, *timing)

// mirrorWHIP proxies remote WHIP rooms here, so WHEP viewers find them.
func mirrorWHIP(names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "whip:") })
}

// startNode starts a focus named name in m.
func startNode(t *testing.T, m *fakeMesh, name string, opts ...nodeOption) *node {
	t.Helper()
	n := &node{name: name, log: &testLog{t: t}}
	log := n.log.Logger().With().Str("focus", name).Logger()
	var err error
	n.engine, err = rtc.New(rtc.Config{BindAddress: "127.0.0.1"}, log)
	if err != nil {
		t.Fatal(err)
	}
	n.sfu = focus.New(focus.Options{Log: log})
	n.whip, err = whip.New(whip.Options{Engine: n.engine, SFU: n.sfu, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", n.whip.Handler())
	n.hs = httptest.NewServer(mux)
	n.url = n.hs.URL
	m.set(name, n.url)
	o := Options{
		SFU:       n.sfu,
		Engine:    n.engine,
		Directory: m.dir(name),
		Holdings: func(cs []mesh.Conference) {
			if !n.gone.Load() {
				m.setHoldings(name, cs)
			}
		},
		Secret: testSecret,
		Log:    log,
		Mirror: mirrorWHIP,
	}
	tm := defaultTiming()
	for _, opt := range opts {
		opt(&o, &tm)
	}
	n.cascade, err = newCascade(o, tm)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/cascade/", n.cascade.Handler())
	t.Cleanup(func() {
		// $CASCADE_TEST_LOGS names a directory for every focus's whole log.
		if dir := os.Getenv("CASCADE_TEST_LOGS"); dir != "" {
			file := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+name+".log")
			_ = os.WriteFile(file, []byte(n.log.String()), 0o644)
		}
	})
	t.Cleanup(func() { n.log.report(name) })
	t.Cleanup(n.close)
	return n
}

// close stops the node, cascade first.
func (n *node) close() {
	n.closeOnce.Do(func() {
		n.cascade.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.whip.Close(ctx)
		n.hs.CloseClientConnections()
		n.hs.Close()
		n.sfu.Close()
		_ = n.engine.Close()
	})
}

// kill makes the node vanish without a goodbye: its HTTP server refuses
// connections, its media socket is closed, and what it reports no longer
// reaches the mesh (which still lists it, as a mesh that has not noticed
// yet). The rest is released at cleanup.
func (n *node) kill() {
	n.gone.Store(true)
	n.hs.CloseClientConnections()
	n.hs.Close()
	_ = n.engine.Close()
}

// eventually polls cond every 20 ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxiesFrom returns the participants of conference id on n that
// proxy participants of origin.
func (n *node) proxiesFrom(id focus.ConferenceID, origin string) []*focus.Participant {
	conf := n.sfu.Conference(id)
	if conf == nil {
		return nil
	}
	var out []*focus.Participant
	for _, p := range conf.Participants() {
		if p.Info().Origin == origin && p.Info().Identity != viewerIdentity(origin) {
			out = append(out, p)
		}
	}
	return out
}

// trunkTo returns n's status of its trunk with peer in direction dir.
func (n *node) trunkTo(peer, dir string) (TrunkStatus, bool) {
	for _, ts := range n.cascade.Status().Trunks {
		if ts.Peer == peer && ts.Direction == dir {
			return ts, true
		}
	}
	return TrunkStatus{}, false
}

// testLog keeps a focus's log in memory; a failed test prints its tail.
// (internal/focustest has the same, but imports the server, which
// imports this package.)
type testLog struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

// Logger writes JSON lines at debug level, stamped to the microsecond.
func (l *testLog) Logger() zerolog.Logger {
	return zerolog.New(l).Level(zerolog.DebugLevel).Hook(zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, _ string) {
		e.Str("at", time.Now().Format("15:04:05.000000"))
	}))
}

// Write implements io.Writer, for many goroutines.
func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is the whole log so far.
func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// report prints the last lines of the log of a failed test.
func (l *testLog) report(name string) {
	if !l.t.Failed() {
		return
	}
	lines := strings.Split(strings.TrimSpace(l.String()), "\n")
	l.t.Logf("log of focus %s (last lines; set CASCADE_TEST_LOGS=dir for all):\n%s", name, strings.Join(lines[max(0, len(lines)-60):], "\n"))
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func equalJSON(a, b any) bool { return toJSON(a) == toJSON(b) }

// reconcile runs a reconcile round on n's control loop and waits for it.
func (n *node) reconcile() {
	done := make(chan struct{})
	n.cascade.q.push(func() {
		n.cascade.ctl.reconcile(n.cascade)
		close(done)
	})
	<-done
}

// publishAndView publishes into room "r" on from and watches it on to
// until video arrives there over the trunk. The caller ends both
// clients (a vanished focus's publisher is best left to Vanish).
func publishAndView(ctx context.Context, t *testing.T, from, to *node) (*testclient.Publisher, *testclient.Viewer) {
	t.Helper()
	pub, err := testclient.Publish(ctx, from.url, "r", testclient.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := testclient.ViewWhenPublished(ctx, to.url, "r", testclient.ViewOptions{})
	if err != nil {
		_ = pub.Close()
		t.Fatal(err)
	}
	if err := v.WaitPackets(ctx, webrtc.RTPCodecTypeVideo, 20); err != nil {
		_ = v.Close()
		_ = pub.Close()
		t.Fatal(err)
	}
	return pub, v
}
