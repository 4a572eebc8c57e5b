package mesh

import (
	"context"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210")
)

// testLog is silent unless MESH_TEST_LOG is set.
func testLog(name string) zerolog.Logger {
	if os.Getenv("MESH_TEST_LOG") == "" {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Str("node", name).Logger()
}

func testConfig(name string, seeds ...string) Config {
	return Config{
		NodeName:       name,
		BindAddr:       "127.0.0.1",
		Seeds:          seeds,
		GossipKey:      testKey,
		RejoinInterval: 300 * time.Millisecond,
		Identity:       Identity{TrunkURL: "http://" + name + ".test", MatrixUserID: "@" + name + ":test"},
		Log:            testLog(name),
	}
}

// startNode makes and starts a node; the test's cleanup closes it.
func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeName, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.Start(ctx)
	t.Cleanup(func() {
		cancel()
		n.Close()
	})
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stateOf(n *Node, name string) NodeState {
	info, ok := n.Node(name)
	if !ok {
		return ""
	}
	return info.State
}

// aliveSet is the names n lists as alive (or suspect), sorted.
func aliveSet(n *Node) string {
	var names []string
	for _, info := range n.Nodes() {
		if info.State == StateAlive || info.State == StateSuspect {
			names = append(names, info.Name)
		}
	}
	return strings.Join(names, ",")
}

// mesh3 starts a, b and c, b and c seeded with a only, and waits until
// each lists all three alive.
func mesh3(t *testing.T) (a, b, c *Node) {
	t.Helper()
	a = startNode(t, testConfig("a"))
	b = startNode(t, testConfig("b", a.Addr()))
	c = startNode(t, testConfig("c", a.Addr()))
	waitFor(t, 10*time.Second, "a, b and c see each other", func() bool {
		return aliveSet(a) == "a,b,c" && aliveSet(b) == "a,b,c" && aliveSet(c) == "a,b,c"
	})
	return a, b, c
}

func conf(name string, participants ...string) Conference {
	c := Conference{Names: []string{name, "!" + name + ":test"}}
	for _, p := range participants {
		c.Participants = append(c.Participants, Participant{
			ID: p, Identity: "@" + p + ":test", Role: "member",
			Tracks: []Track{
				{ID: p + "-a", StreamID: p, Kind: "audio", Source: "microphone", MimeType: "audio/opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"},
				{ID: p + "-v", StreamID: p, Kind: "video", Source: "camera", MimeType: "video/VP8", ClockRate: 90000, Layers: []string{"q", "h", "f"},
					Sizes: []LayerSize{{320, 180}, {640, 360}, {1280, 720}}},
			},
		})
	}
	return c
}

func TestMeshFormsAndGossipsHoldings(t *testing.T) {
	a, b, c := mesh3(t)

	nodes := b.Nodes()
	if len(nodes) != 3 || nodes[0].Name != "a" || nodes[1].Name != "b" || nodes[2].Name != "c" {
		t.Fatalf("b.Nodes() = %+v, want a, b, c in order", nodes)
	}
	if !nodes[1].Self || nodes[1].State != StateAlive || nodes[1].Addr != b.Addr() || nodes[0].Self {
		t.Fatalf("b.Nodes(): self entry %+v, a's %+v", nodes[1], nodes[0])
	}
	if nodes[0].Addr != a.Addr() || nodes[0].Identity != a.cfg.Identity {
		t.Fatalf("b sees a as %+v; a is at %s with %+v", nodes[0], a.Addr(), a.cfg.Identity)
	}
	if b.Self() != "b" {
		t.Fatalf("Self() = %q", b.Self())
	}

	// Small holdings travel as broadcasts, relayed by whoever gets them.
	want := []Conference{conf("room1", "alice")}
	a.SetHoldings(want)
	for _, n := range []*Node{b, c} {
		waitFor(t, 5*time.Second, n.Self()+" sees a's holdings", func() bool {
			return reflect.DeepEqual(n.Holdings("a"), want)
		})
		info, _ := n.Node("a")
		self, _ := a.Node("a")
		if info.Version != self.Version || info.Conferences != 1 {
			t.Fatalf("%s holds a at version %d with %d conferences; a is at %d", n.Self(), info.Version, info.Conferences, self.Version)
		}
	}
	if got := a.Holdings("a"); !reflect.DeepEqual(got, want) {
		t.Fatalf("a.Holdings(a) = %+v", got)
	}

	load := Load{Participants: 3, BitrateBps: 2_500_000, CPU: 0.25}
	a.SetLoad(load)
	waitFor(t, 5*time.Second, "c sees a's load", func() bool {
		info, _ := c.Node("a")
		return info.Load == load
	})

	// A node that joins later gets everything in the join's push/pull.
	d := startNode(t, testConfig("d", c.Addr()))
	waitFor(t, 5*time.Second, "d sees a's holdings", func() bool {
		return reflect.DeepEqual(d.Holdings("a"), want)
	})
}

func TestLargeHoldingsGoOverTCP(t *testing.T) {
	a, b, c := mesh3(t)
	var big []Conference
	for i := range 200 {
		big = append(big, conf("conference-"+strconv.Itoa(i), "p"+strconv.Itoa(i)))
	}
	a.SetHoldings(big)
	a.mu.Lock()
	msg, err := encode(kindState, a.selfWireLocked())
	a.mu.Unlock()
	if err != nil || len(msg) <= broadcastMaxBytes {
		t.Fatalf("200 conferences encode to %d bytes (%v); the test wants more than %d", len(msg), err, broadcastMaxBytes)
	}
	for _, n := range []*Node{b, c} {
		waitFor(t, 5*time.Second, n.Self()+" sees 200 conferences of a", func() bool {
			return reflect.DeepEqual(n.Holdings("a"), big)
		})
	}
}

func TestCrashedNodeIsDeadWithinSeconds(t *testing.T) {
	a, b, c := mesh3(t)
	c.SetHoldings([]Conference{conf("room", "carol")})
	waitFor(t, 5*time.Second, "a and b see c's holdings", func() bool {
		return len(a.Holdings("c")) == 1 && len(b.Holdings("c")) == 1
	})
	if err := c.shutdown(false); err != nil { // memberlist Shutdown without Leave: a SIGKILL
		t.Fatal(err)
	}
	took := waitFor(t, 5*time.Second, "a and b report c dead and drop its holdings", func() bool {
		return stateOf(a, "c") == StateDead && stateOf(b, "c") == StateDead &&
			a.Holdings("c") == nil && b.Holdings("c") == nil
	})
	t.Logf("c reported dead after %v", took)
	info, _ := a.Node("c")
	if info.Version != 0 || info.Conferences != 0 || info.Addr != c.Addr() {
		t.Fatalf("a still holds state of dead c: %+v", info)
	}
	if aliveSet(a) != "a,b" {
		t.Fatalf("a lists alive %q", aliveSet(a))
	}
}

func TestGracefulCloseIsLeft(t *testing.T) {
	a, b, c := mesh3(t)
	c.SetHoldings([]Conference{conf("room", "carol")})
	waitFor(t, 5*time.Second, "a sees c's holdings", func() bool { return len(a.Holdings("c")) == 1 })

	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %v", took)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitFor(t, 3*time.Second, "a and b report c left", func() bool {
		return stateOf(a, "c") == StateLeft && stateOf(b, "c") == StateLeft &&
			a.Holdings("c") == nil && b.Holdings("c") == nil
	})
	// Calls after Close are harmless.
	c.SetHoldings([]Conference{conf("late")})
	c.SetLoad(Load{Participants: 1})
	c.OnChange(func() {})()
}

func TestRestartedNodeWins(t *testing.T) {
	for _, tc := range []struct {
		name     string
		graceful bool
		waitGone bool
	}{
		{"after leave", true, true},
		{"after crash, once dead", false, true},
		{"after crash, before anyone noticed", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, c := mesh3(t)
			c.SetHoldings([]Conference{conf("old", "carol")})
			waitFor(t, 5*time.Second, "a sees c's old holdings", func() bool { return len(a.Holdings("c")) == 1 })
			old, _ := a.Node("c")

			if err := c.shutdown(tc.graceful); err != nil {
				t.Fatal(err)
			}
			if tc.waitGone {
				waitFor(t, 6*time.Second, "a and b see c gone", func() bool {
					return a.Holdings("c") == nil && b.Holdings("c") == nil
				})
			}
			// Same name, same address, as a restarted process.
			cfg := testConfig("c", a.Addr())
			_, port, _ := net.SplitHostPort(c.Addr())
			cfg.BindPort, _ = strconv.Atoi(port)
			c2 := startNode(t, cfg)
			want := []Conference{conf("new", "carol2")}
			c2.SetHoldings(want)
			for _, n := range []*Node{a, b} {
				waitFor(t, 15*time.Second, n.Self()+" sees the new c", func() bool {
					info, _ := n.Node("c")
					return info.State == StateAlive && reflect.DeepEqual(n.Holdings("c"), want) && info.Version > old.Version
				})
			}
			waitFor(t, 5*time.Second, "the new c sees a and b", func() bool { return aliveSet(c2) == "a,b,c" })
		})
	}
}

func TestRejoinAfterSeedComesBack(t *testing.T) {
	a := startNode(t, testConfig("a"))
	c := startNode(t, testConfig("c", a.Addr()))
	waitFor(t, 5*time.Second, "c sees a", func() bool { return aliveSet(c) == "a,c" })

	if err := a.shutdown(false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 6*time.Second, "c sees a dead", func() bool { return stateOf(c, "a") == StateDead })

	// a comes back at the same address, seeded with nobody: only c's
	// rejoin loop can bring them together.
	cfg := testConfig("a")
	_, port, _ := net.SplitHostPort(a.Addr())
	cfg.BindPort, _ = strconv.Atoi(port)
	a2 := startNode(t, cfg)
	want := []Conference{conf("back", "alice")}
	a2.SetHoldings(want)
	waitFor(t, 10*time.Second, "c re-joins a", func() bool {
		return aliveSet(c) == "a,c" && aliveSet(a2) == "a,c" && reflect.DeepEqual(c.Holdings("a"), want)
	})
}

func TestGossipKey(t *testing.T) {
	a := startNode(t, testConfig("a"))
	b := startNode(t, testConfig("b", a.Addr()))
	waitFor(t, 5*time.Second, "a and b mesh with the same key", func() bool {
		return aliveSet(a) == "a,b" && aliveSet(b) == "a,b"
	})

	for _, key := range [][]byte{otherKey, nil} {
		cfg := testConfig("x")
		cfg.GossipKey = key
		x, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.ml.Join([]string{a.Addr()}); err == nil {
			t.Errorf("key %q: joined a mesh with another key", key)
		}
		if _, ok := a.Node("x"); ok {
			t.Errorf("key %q: a lists x", key)
		}
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if aliveSet(a) != "a,b" {
		t.Fatalf("a lists alive %q", aliveSet(a))
	}
}

func TestSeedNameResolvesToAllAddresses(t *testing.T) {
	a := startNode(t, testConfig("a"))
	_, port, _ := net.SplitHostPort(a.Addr())
	b := startNode(t, testConfig("b", "localhost:"+port))
	addrs := b.seedAddrs(context.Background())
	found := false
	for _, s := range addrs {
		found = found || s == "127.0.0.1:"+port
	}
	if !found {
		t.Fatalf("localhost:%s resolves to %v", port, addrs)
	}
	waitFor(t, 5*time.Second, "b joins a by name", func() bool { return aliveSet(b) == "a,b" })
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, "node name"},
		{"long name", func(c *Config) { c.NodeName = strings.Repeat("n", 200) }, "node name"},
		{"short key", func(c *Config) { c.GossipKey = []byte("short") }, "16, 24 or 32"},
		{"seed without port", func(c *Config) { c.Seeds = []string{"example.org"} }, "seed"},
		{"seed port 0", func(c *Config) { c.Seeds = []string{"example.org:0"} }, "seed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("a")
			tc.edit(&cfg)
			n, err := New(cfg)
			if err == nil {
				n.Close()
				t.Fatal("New accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestOnChangeFiresOnRemoteChange(t *testing.T) {
	a := startNode(t, testConfig("a"))
	b := startNode(t, testConfig("b", a.Addr()))
	waitFor(t, 5*time.Second, "a and b mesh", func() bool { return aliveSet(b) == "a,b" })

	var calls atomic.Int32
	var seen atomic.Value
	cancel := b.OnChange(func() {
		calls.Add(1)
		seen.Store(fmt.Sprint(len(b.Holdings("a")))) // no lock is held during the call
	})
	defer cancel()
	a.SetHoldings([]Conference{conf("r1"), conf("r2")})
	waitFor(t, 5*time.Second, "b's callback sees a's holdings", func() bool {
		s, _ := seen.Load().(string)
		return s == "2"
	})
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var nodes []*Node
	for _, name := range []string{"a", "b", "c"} {
		var seeds []string
		if len(nodes) > 0 {
			seeds = []string{nodes[0].Addr()}
		}
		n, err := New(testConfig(name, seeds...))
		if err != nil {
			t.Fatal(err)
		}
		n.Start(ctx)
		n.OnChange(func() { n.Nodes() })
		nodes = append(nodes, n)
	}
	a, b := nodes[0], nodes[1]
	waitFor(t, 10*time.Second, "the three mesh", func() bool { return aliveSet(a) == "a,b,c" })
	a.SetHoldings([]Conference{conf("r", "alice")})
	a.SetLoad(Load{Participants: 1})
	waitFor(t, 5*time.Second, "b sees a's holdings", func() bool { return len(b.Holdings("a")) == 1 })

	nodes[2].shutdown(false)
	for _, n := range nodes[:2] {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	goleak.VerifyNone(t)
}
