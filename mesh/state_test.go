package mesh

import (
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// offline is a node without memberlist, for the state logic alone. Its
// members b and c are alive.
func offline(t *testing.T) *Node {
	t.Helper()
	n := newNode(Config{NodeName: "a", Identity: Identity{TrunkURL: "http://a.test"}, Log: zerolog.Nop()})
	for i, name := range []string{"b", "c"} {
		n.memberUp(name, net.IPv4(127, 0, 0, 1), uint16(7001+i), nil)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func state(name string, version uint64, confs ...Conference) wireState {
	return wireState{Name: name, Version: version, Identity: wireIdentity{TrunkURL: "http://" + name + ".test"}, Confs: toWireConfs(confs)}
}

func merge(n *Node, ws wireState) (changed, relay bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mergeLocked(&ws, time.Now())
}

func TestMergeKeepsOnlyNewerVersions(t *testing.T) {
	n := offline(t)
	v1 := []Conference{conf("one", "p")}
	v2 := []Conference{conf("two", "q")}
	steps := []struct {
		what          string
		st            wireState
		changed, news bool
		want          []Conference
	}{
		{"first state", state("b", 10, v1...), true, true, v1},
		{"stale news", state("b", 9, v2...), false, false, v1},
		{"the same again", state("b", 10, v2...), false, false, v1},
		{"newer", state("b", 11, v2...), true, true, v2},
		{"much older", state("b", 1), false, false, v2},
	}
	for _, s := range steps {
		changed, news := merge(n, s.st)
		if changed != s.changed || news != s.news {
			t.Fatalf("%s: changed %v, news %v; want %v, %v", s.what, changed, news, s.changed, s.news)
		}
		if got := n.Holdings("b"); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s: holdings %+v, want %+v", s.what, got, s.want)
		}
	}
	if info, _ := n.Node("b"); info.Version != 11 || info.Identity.TrunkURL != "http://b.test" {
		t.Fatalf("b: %+v", info)
	}
}

func TestMergeThroughPushPull(t *testing.T) {
	n := offline(t)
	push := func(states ...wireState) []byte {
		b, err := encode(kindPush, wirePush{States: states})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	n.mergeRemoteState(push(state("b", 5, conf("b5")), state("c", 7, conf("c7"))))
	n.mergeRemoteState(push(state("b", 4, conf("b4")), state("c", 8, conf("c8"))))
	if got := n.Holdings("b"); len(got) != 1 || got[0].Names[0] != "b5" {
		t.Fatalf("b: %+v, want b5 (4 is stale)", got)
	}
	if got := n.Holdings("c"); len(got) != 1 || got[0].Names[0] != "c8" {
		t.Fatalf("c: %+v, want c8", got)
	}
	// A malformed push changes nothing.
	n.mergeRemoteState(append(push(state("b", 99)), '}'))
	if info, _ := n.Node("b"); info.Version != 5 {
		t.Fatalf("b at version %d after a malformed push", info.Version)
	}

	// What this node sends holds itself and its alive members.
	states, err := decodePush(n.localState())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, s := range states {
		got[s.Name] = s.Version
	}
	if len(got) != 3 || got["b"] != 5 || got["c"] != 8 || got["a"] == 0 {
		t.Fatalf("local state %v", got)
	}
	n.memberDown("c", nil, 0)
	if states, _ := decodePush(n.localState()); len(states) != 2 {
		t.Fatalf("local state after c died holds %d states", len(states))
	}
}

func TestMergeOfOwnState(t *testing.T) {
	n := offline(t)
	n.SetHoldings([]Conference{conf("mine")})
	self, _ := n.Node("a")
	n.takeWork(time.Now()) // publish the holdings

	// Our own state coming back is no news.
	if changed, news := merge(n, state("a", self.Version)); changed || news {
		t.Fatal("own state echoed back counts as news")
	}
	// A newer state of this node (an earlier run whose clock was ahead):
	// this run moves past it and publishes again, holdings unchanged.
	if changed, _ := merge(n, state("a", self.Version+100)); !changed {
		t.Fatal("newer own state ignored")
	}
	now, _ := n.Node("a")
	if now.Version <= self.Version+100 || now.Conferences != 1 {
		t.Fatalf("after a newer own state: %+v (was %d)", now, self.Version)
	}
	if b, _ := n.takeWork(time.Now()); !b.publish {
		t.Fatal("the moved-on state is not published")
	}
	// Again at once: another live node with this name, not an earlier
	// run. Moving past it again would start a race without end.
	if changed, _ := merge(n, state("a", now.Version+1)); changed {
		t.Fatal("moved past a namesake twice in a row")
	}
}

func TestDeadAndLeftNodes(t *testing.T) {
	n := offline(t)
	merge(n, state("b", 10, conf("r")))
	merge(n, state("c", 20, conf("r")))

	// c dies: its state goes, and news of it is ignored until it is back.
	n.memberDown("c", nil, 0)
	if n.Holdings("c") != nil || stateOf(n, "c") != StateDead {
		t.Fatalf("dead c: %v, holdings %+v", stateOf(n, "c"), n.Holdings("c"))
	}
	if changed, _ := merge(n, state("c", 21, conf("r"))); changed || n.Holdings("c") != nil {
		t.Fatal("state of a dead node accepted")
	}
	// Its farewell, arriving after memberlist's verdict, makes it left.
	bye := state("c", 22)
	bye.Left = true
	if changed, _ := merge(n, bye); !changed || stateOf(n, "c") != StateLeft {
		t.Fatalf("farewell of dead c: %v", stateOf(n, "c"))
	}
	// Back again (a restart), with a newer state.
	n.memberUp("c", net.IPv4(127, 0, 0, 1), 7002, nil)
	merge(n, state("c", 30, conf("again")))
	if got := n.Holdings("c"); stateOf(n, "c") != StateAlive || len(got) != 1 || got[0].Names[0] != "again" {
		t.Fatalf("c back: %v, %+v", stateOf(n, "c"), got)
	}

	// b says goodbye before memberlist tells: its holdings go at once,
	// and memberlist's verdict then reads "left".
	bye = state("b", 11)
	bye.Left = true
	merge(n, bye)
	if n.Holdings("b") != nil || stateOf(n, "b") != StateLeft {
		t.Fatalf("b after farewell: %v, %+v", stateOf(n, "b"), n.Holdings("b"))
	}
	n.memberDown("b", nil, 0)
	if stateOf(n, "b") != StateLeft {
		t.Fatalf("b after leaving: %v", stateOf(n, "b"))
	}

	// A node memberlist has not reported yet: kept, not shown.
	merge(n, state("d", 5, conf("d")))
	if _, ok := n.Node("d"); ok || n.Holdings("d") != nil {
		t.Fatal("unreported node d is listed")
	}
	n.memberUp("d", net.IPv4(127, 0, 0, 1), 7004, nil)
	if len(n.Holdings("d")) != 1 {
		t.Fatal("d's early state lost")
	}

	// Forgotten after a while.
	n.prune(time.Now().Add(forgetAfter + time.Second))
	if _, ok := n.Node("b"); ok {
		t.Fatal("left node b still listed long after")
	}
	if _, ok := n.Node("d"); !ok {
		t.Fatal("alive node d pruned")
	}
}

func TestHoldingsAreCopies(t *testing.T) {
	n := offline(t)
	in := []Conference{conf("r", "p")}
	n.SetHoldings(in)
	in[0].Names[0] = "changed"
	in[0].Participants[0].Tracks[1].Layers[0] = "x"
	in[0].Participants[0].Tracks[1].Sizes[0].Width = 1
	out := n.Holdings("a")
	if out[0].Names[0] != "r" || out[0].Participants[0].Tracks[1].Layers[0] != "q" || out[0].Participants[0].Tracks[1].Sizes[0].Width != 320 {
		t.Fatalf("SetHoldings kept the caller's slices: %+v", out)
	}
	out[0].Participants[0].ID = "changed"
	if n.Holdings("a")[0].Participants[0].ID != "p" {
		t.Fatal("Holdings returned the node's own slices")
	}

	merge(n, state("b", 10, conf("r", "p")))
	got := n.Holdings("b")
	got[0].Participants[0].Tracks[0].ID = "changed"
	if n.Holdings("b")[0].Participants[0].Tracks[0].ID != "p-a" {
		t.Fatal("Holdings of a remote node returned shared slices")
	}
}

func TestSetHoldingsAndSetLoadVersions(t *testing.T) {
	n := offline(t)
	v0, _ := n.Node("a")
	if v0.Version < uint64(time.Now().Add(-time.Minute).UnixNano()) {
		t.Fatalf("version %d does not start from the clock", v0.Version)
	}
	n.SetHoldings([]Conference{conf("r")})
	n.SetHoldings([]Conference{conf("r")}) // unchanged: no new version
	n.SetLoad(Load{Participants: 2})
	n.SetLoad(Load{Participants: 2})
	v1, _ := n.Node("a")
	if v1.Version != v0.Version+2 {
		t.Fatalf("version %d, want %d", v1.Version, v0.Version+2)
	}
}

func TestLoadIsGossipedAtMostOncePerSecond(t *testing.T) {
	n := offline(t)
	t0 := time.Now()
	n.SetLoad(Load{Participants: 1})
	if b, _ := n.takeWork(t0); !b.publish {
		t.Fatal("first load not published")
	}
	n.SetLoad(Load{Participants: 2})
	n.SetLoad(Load{Participants: 3})
	b, wait := n.takeWork(t0.Add(300 * time.Millisecond))
	if b.publish || wait != 700*time.Millisecond {
		t.Fatalf("load published again after 300 ms (wait %v)", wait)
	}
	b, _ = n.takeWork(t0.Add(time.Second))
	if !b.publish {
		t.Fatal("load not published after a second")
	}
	ws, _, err := decodeMessage(b.state)
	if err != nil || ws.Load.Participants != 3 {
		t.Fatalf("published %+v (%v), want the last load", ws, err)
	}
	// Holdings go at once, load or not.
	n.SetLoad(Load{Participants: 4})
	n.SetHoldings([]Conference{conf("r")})
	if b, _ := n.takeWork(t0.Add(1100 * time.Millisecond)); !b.publish {
		t.Fatal("holdings held back by the load limit")
	}
}

func TestSmallStatesAreBroadcast(t *testing.T) {
	n := offline(t)
	n.SetHoldings([]Conference{conf("r", "p")})
	b, _ := n.takeWork(time.Now())
	if len(b.state) > broadcastMaxBytes {
		t.Fatalf("one conference encodes to %d bytes", len(b.state))
	}
	n.send(b)
	if n.queue.NumQueued() != 1 {
		t.Fatalf("%d broadcasts queued, want 1", n.queue.NumQueued())
	}
	var big []Conference
	for i := range 50 {
		big = append(big, conf("r"+strconv.Itoa(i), "p"))
	}
	n.SetHoldings(big)
	b, _ = n.takeWork(time.Now())
	n.send(b) // no members with addresses to send to here; not queued
	if n.queue.NumQueued() != 1 {
		t.Fatalf("a %d-byte state was queued as a broadcast", len(b.state))
	}
	// A newer small state replaces the older one in the queue.
	n.SetHoldings(nil)
	b, _ = n.takeWork(time.Now())
	n.send(b)
	msgs := n.queue.GetBroadcasts(0, 1400)
	if len(msgs) != 1 {
		t.Fatalf("%d broadcasts queued, want 1", len(msgs))
	}
	if ws, _, _ := decodeMessage(msgs[0]); ws == nil || len(ws.Confs) != 0 {
		t.Fatalf("queued %+v, want the empty holdings", ws)
	}
}

func TestWantsAndReplies(t *testing.T) {
	n := offline(t)
	// memberUp scheduled asks for b and c: nothing held of them.
	now := time.Now()
	if b, wait := n.takeWork(now); len(b.wants) != 0 || wait <= 0 || wait > wantDelay {
		t.Fatalf("asked at once (%d), or wait %v", len(b.wants), wait)
	}
	merge(n, state("b", 10)) // b's state came meanwhile
	b, _ := n.takeWork(now.Add(wantDelay))
	if len(b.wants) != 1 || b.wants[0].name != "c" || b.wants[0].node.Port != 7002 {
		t.Fatalf("asked %+v, want c only", b.wants)
	}
	// Metadata naming a newer version than the one held: ask again.
	meta, _ := encodeMeta("b", 12, Identity{}, metaMaxBytes)
	n.memberUp("b", net.IPv4(127, 0, 0, 1), 7001, meta)
	if b, _ := n.takeWork(now.Add(2 * wantDelay)); len(b.wants) != 1 || b.wants[0].name != "b" {
		t.Fatalf("asked %+v, want b", b.wants)
	}

	want, _ := encode(kindWant, wireWant{From: "c"})
	n.handleMessage(want)
	unknown, _ := encode(kindWant, wireWant{From: "nobody"})
	n.handleMessage(unknown)
	b, _ = n.takeWork(now)
	if len(b.replies) != 1 || b.replies[0].name != "c" || b.state == nil {
		t.Fatalf("replies %+v", b.replies)
	}
}

func TestNodeMetaFits(t *testing.T) {
	long := strings.Repeat("x", 600)
	for _, tc := range []struct {
		name     string
		id       Identity
		complete bool
	}{
		{"short", Identity{TrunkURL: "https://focus.example.org", MatrixUserID: "@focus:example.org", MatrixDeviceID: "ABCDEF"}, true},
		{"empty", Identity{}, true},
		{"long url", Identity{TrunkURL: long, MatrixUserID: "@u:x", MatrixDeviceID: "D"}, false},
		{"all long", Identity{TrunkURL: long, MatrixUserID: long, MatrixDeviceID: long}, false},
		{"just over", Identity{TrunkURL: strings.Repeat("u", 200), MatrixUserID: strings.Repeat("m", 200), MatrixDeviceID: strings.Repeat("d", 100)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.Repeat("n", maxNameBytes)
			version := ^uint64(0)
			b, complete := encodeMeta(name, version, tc.id, metaMaxBytes)
			if len(b) > metaMaxBytes {
				t.Fatalf("%d bytes", len(b))
			}
			if complete != tc.complete {
				t.Fatalf("complete %v, want %v", complete, tc.complete)
			}
			m, err := decodeMeta(b)
			if err != nil || m.Name != name || m.Version != version {
				t.Fatalf("decoded %+v, %v", m, err)
			}
			if tc.complete && (m.TrunkURL != tc.id.TrunkURL || m.UserID != tc.id.MatrixUserID || m.DeviceID != tc.id.MatrixDeviceID) {
				t.Fatalf("identity lost: %+v", m)
			}
			// What is kept is whole, never a truncated field.
			for _, f := range []string{m.TrunkURL, m.UserID, m.DeviceID} {
				if f != "" && f != tc.id.TrunkURL && f != tc.id.MatrixUserID && f != tc.id.MatrixDeviceID {
					t.Fatalf("truncated field %q", f)
				}
			}
		})
	}

	// Through the delegate, warning once.
	var warnings atomic.Int32
	log := zerolog.New(io.Discard).Hook(zerolog.HookFunc(func(e *zerolog.Event, l zerolog.Level, msg string) {
		if l == zerolog.WarnLevel {
			warnings.Add(1)
		}
	}))
	n := newNode(Config{NodeName: "a", Identity: Identity{TrunkURL: long}, Log: log})
	d := delegate{n}
	for range 3 {
		if b := d.NodeMeta(512); len(b) > 512 {
			t.Fatalf("NodeMeta: %d bytes", len(b))
		}
	}
	if warnings.Load() != 1 {
		t.Fatalf("%d warnings, want 1", warnings.Load())
	}
}

func TestSuspectFromMemberlistLog(t *testing.T) {
	n := offline(t)
	w := logWriter{n}
	w.Write([]byte("[DEBUG] memberlist: Failed UDP ping: b (timeout reached)\n"))
	if stateOf(n, "b") != StateAlive {
		t.Fatal("a failed ping alone made b suspect")
	}
	w.Write([]byte("[INFO] memberlist: Suspect b has failed, no acks received\n"))
	if stateOf(n, "b") != StateSuspect {
		t.Fatalf("b is %v", stateOf(n, "b"))
	}
	merge(n, state("b", 3, conf("r")))
	if len(n.Holdings("b")) != 1 {
		t.Fatal("a suspect node's holdings are hidden")
	}
	n.memberUp("b", net.IPv4(127, 0, 0, 1), 7001, nil) // refuted
	if stateOf(n, "b") != StateAlive {
		t.Fatalf("b is %v after refuting", stateOf(n, "b"))
	}
	if _, ok := suspectIn("Suspect  has failed, no acks received"); ok {
		t.Fatal("empty name accepted")
	}
}

func TestOnChangeCoalesces(t *testing.T) {
	n := offline(t)
	var calls atomic.Int32
	cancel := n.OnChange(func() {
		calls.Add(1)
		n.Nodes() // would deadlock if a lock were held
	})
	for i := range 100 {
		n.SetLoad(Load{Participants: i + 1})
	}
	waitFor(t, time.Second, "a call", func() bool { return calls.Load() >= 1 })
	// Nothing more should come; that takes a wait to see.
	time.Sleep(10 * coalesceDelay)
	if c := calls.Load(); c > 2 {
		t.Fatalf("%d calls for one burst", c)
	}
	before := calls.Load()
	cancel()
	n.SetLoad(Load{Participants: 1000})
	time.Sleep(5 * coalesceDelay)
	if calls.Load() != before {
		t.Fatal("called after cancel")
	}
}

// TestLayerSizes: layer sizes travel with their track, compactly, and a
// state with sizes that do not match its layers, or out of bounds, is
// refused whole.
func TestLayerSizes(t *testing.T) {
	c := conf("r", "p")
	ws := state("b", 3, c)
	b, err := encode(kindState, ws)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"z":[320,180,640,360,1280,720]`) {
		t.Errorf("sizes encoded as %s", b)
	}
	got, _, err := decodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if back := fromWireConfs(got.Confs); !reflect.DeepEqual(back, []Conference{c}) {
		t.Errorf("round trip: %+v, want %+v", back, []Conference{c})
	}

	// A single-layer video track has one size; audio and unknown sizes
	// have none.
	one := Track{ID: "v", Kind: "video", Sizes: []LayerSize{{640, 480}}}
	none := Track{ID: "a", Kind: "audio"}
	c2 := Conference{Names: []string{"r"}, Participants: []Participant{{ID: "p", Tracks: []Track{one, none}}}}
	b, _ = encode(kindState, state("b", 4, c2))
	if got, _, err := decodeMessage(b); err != nil || !reflect.DeepEqual(fromWireConfs(got.Confs), []Conference{c2}) {
		t.Errorf("single layer: %v, %+v", err, got)
	}

	for name, sizes := range map[string][]uint32{
		"a value short":           {320, 180, 640, 360, 1280},
		"more sizes than layers":  {1, 1, 2, 2, 3, 3, 4, 4},
		"fewer sizes than layers": {320, 180},
		"too wide":                {320, 180, 640, 360, maxDimension + 1, 720},
	} {
		bad := state("b", 5, conf("r", "p"))
		bad.Confs[0].Participants[0].Tracks[1].Sizes = sizes
		b, _ := encode(kindState, bad)
		if _, _, err := decodeMessage(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, err := decodeMessage([]byte(`s{"n":"b","v":1,"c":[{"n":["r"],"p":[{"i":"p","t":[{"i":"v","z":[-1,1]}]}]}]}`)); err == nil {
		t.Error("a negative size: accepted")
	}
}
