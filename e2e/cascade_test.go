package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/focustest"
	"github.com/focus-sfu/focus/internal/testclient"
)

// The cascade tests run each focus as its own process on 127.0.0.1, the
// way operators run them: `focus serve` with a mesh section, seeded
// through the first node.

const (
	cascadeTrunkSecret = "cascade-test-trunk-secret-0123456789abcdef"
	// cascadeGone bounds how long the survivors take to drop a killed
	// focus's tracks (issue: within 5 s).
	cascadeGone = 5 * time.Second
	// cascadeMedia is how many packets of each kind a viewer must get.
	cascadeMedia = 50
)

var cascadeGossipKey = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// cascadeNode is one focus process of a test mesh.
type cascadeNode struct {
	*focustest.Process
	gossip int // gossip port
}

// startCascadeNode runs focus `name` with its gossip on a free port,
// seeded with seeds (gossip ports of nodes already running).
func startCascadeNode(t *testing.T, name string, seeds ...int) *cascadeNode {
	t.Helper()
	return startCascadeNodeWith(t, name, nodeConfig{}, seeds...)
}

// nodeConfig is configuration (YAML) added to a test node's: top-level
// sections, and keys of the mesh section (indented by two spaces).
type nodeConfig struct{ Top, Mesh string }

// startCascadeNodeWith is startCascadeNode with more configuration.
func startCascadeNodeWith(t *testing.T, name string, extra nodeConfig, seeds ...int) *cascadeNode {
	t.Helper()
	port := focustest.FreePort(t)
	var seedList []string
	for _, s := range seeds {
		seedList = append(seedList, fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", s)))
	}
	cfg := fmt.Sprintf(`listen: "127.0.0.1:0"
webrtc:
  udp_port: 0
admin:
  pprof: true
log:
  level: debug
  format: json
mesh:
  enabled: true
  node_name: %q
  bind: "127.0.0.1:%d"
  seeds: [%s]
  gossip_key: %q
  trunk_secret: %q
  rejoin_interval: 2s
  trunk_idle_timeout: 2s
%s%s`, name, port, strings.Join(seedList, ", "), cascadeGossipKey, cascadeTrunkSecret, extra.Mesh, extra.Top)
	return &cascadeNode{Process: focustest.StartProcess(t, name, cfg), gossip: port}
}

// meshView is the part of GET /api/mesh the tests read.
type meshView struct {
	Self  string `json:"self"`
	Nodes []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"nodes"`
	Cascade struct {
		Trunks []struct {
			Peer      string `json:"peer"`
			Direction string `json:"direction"`
			State     string `json:"state"`
			Tracks    []struct {
				Track string `json:"track"`
				Layer int    `json:"layer"`
			} `json:"tracks"`
		} `json:"trunks"`
	} `json:"cascade"`
}

// trunkSubscriptions is how many tracks n pulls from peer, by /api/mesh:
// each once, whatever number of its simulcast layers.
func trunkSubscriptions(ctx context.Context, t *testing.T, n *cascadeNode, peer string) int {
	t.Helper()
	tracks, _ := trunkPulls(ctx, t, n, peer)
	return tracks
}

// trunkPulls is how many tracks, and how many layers of them in all, n
// pulls from peer, by /api/mesh.
func trunkPulls(ctx context.Context, t *testing.T, n *cascadeNode, peer string) (tracks, layers int) {
	t.Helper()
	seen := map[string]bool{}
	for _, tr := range n.mesh(ctx, t).Cascade.Trunks {
		if tr.Peer != peer || tr.Direction != "pull" {
			continue
		}
		for _, tt := range tr.Tracks {
			layers++
			if !seen[tt.Track] {
				seen[tt.Track] = true
				tracks++
			}
		}
	}
	return tracks, layers
}

func (n *cascadeNode) mesh(ctx context.Context, t *testing.T) meshView {
	t.Helper()
	var v meshView
	if err := n.Get(ctx, "/api/mesh", &v); err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	return v
}

// alive lists the nodes n sees alive.
func (v meshView) alive() []string {
	var out []string
	for _, node := range v.Nodes {
		if node.State == "alive" {
			out = append(out, node.Name)
		}
	}
	return out
}

// waitMesh waits until every node sees exactly the names alive.
func waitMesh(ctx context.Context, t *testing.T, nodes []*cascadeNode, names ...string) {
	t.Helper()
	want := strings.Join(names, ",")
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for {
			got := strings.Join(n.mesh(ctx, t).alive(), ",")
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %q alive, want %q", n.Name, got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// publishedIn lists the participant IDs with tracks in room on n, from
// GET /api/rooms.
func publishedIn(ctx context.Context, t *testing.T, n *cascadeNode, room string) []string {
	t.Helper()
	var status struct {
		Rooms []struct {
			Name       string `json:"name"`
			Publishers []struct {
				ID     string `json:"id"`
				Tracks []any  `json:"tracks"`
			} `json:"publishers"`
		} `json:"rooms"`
	}
	if err := n.Get(ctx, "/api/rooms", &status); err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	var out []string
	for _, r := range status.Rooms {
		if r.Name != room {
			continue
		}
		for _, p := range r.Publishers {
			if len(p.Tracks) > 0 {
				out = append(out, p.ID)
			}
		}
	}
	return out
}

// publisherID is the participant ID of a WHIP publisher: its resource's
// last path element.
func publisherID(p *testclient.Publisher) string { return path.Base(p.Resource()) }

// waitMedia waits until v has at least n packets of audio and of video.
func waitMedia(ctx context.Context, t *testing.T, what string, v *testclient.Viewer, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := v.Stats()
		if st.Audio.Packets >= n && st.Video.Packets >= n {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: %d audio and %d video packets after 30 s, want %d of each", what, st.Audio.Packets, st.Video.Packets, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkOnce fails the test if v got any packet twice or saw more than
// one source per kind: a loop in the mesh would show as either.
func checkOnce(t *testing.T, what string, v *testclient.Viewer) {
	t.Helper()
	st := v.Stats()
	for _, k := range []struct {
		name string
		s    testclient.TrackStats
	}{{"audio", st.Audio}, {"video", st.Video}} {
		if k.s.Seq.Duplicates != 0 {
			t.Errorf("%s: %d duplicate %s packets", what, k.s.Seq.Duplicates, k.name)
		}
		if len(k.s.SSRCs) != 1 || len(k.s.TrackIDs) != 1 {
			t.Errorf("%s: %s arrived as SSRCs %v, tracks %v; want one of each", what, k.name, k.s.SSRCs, k.s.TrackIDs)
		}
		if k.s.Corrupt != 0 || k.s.CounterGaps > 2 {
			t.Errorf("%s: %s has %d corrupt payloads and %d counter gaps", what, k.name, k.s.Corrupt, k.s.CounterGaps)
		}
	}
}

func view(ctx context.Context, t *testing.T, n *cascadeNode, room, stream string) *testclient.Viewer {
	t.Helper()
	v, err := testclient.ViewWhenPublished(ctx, n.URL, room, testclient.ViewOptions{Stream: stream})
	if err != nil {
		t.Fatalf("view %s on %s: %v", stream, n.Name, err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

func publish(ctx context.Context, t *testing.T, n *cascadeNode, room string) *testclient.Publisher {
	t.Helper()
	p, err := testclient.Publish(ctx, n.URL, room, testclient.PublishOptions{})
	if err != nil {
		t.Fatalf("publish on %s: %v", n.Name, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestCascadeTrunkRefusesBadSignatures: trunk requests must be signed
// with the mesh's trunk secret.
func TestCascadeTrunkRefusesBadSignatures(t *testing.T) {
	a := startCascadeNode(t, "a")
	for name, hdr := range map[string]map[string]string{
		"unsigned": {},
		"bad signature": {
			"X-Focus-Node": "b", "X-Focus-Timestamp": fmt.Sprint(time.Now().Unix()),
			"X-Focus-Nonce": strings.Repeat("ab", 16), "X-Focus-Signature": strings.Repeat("00", 32),
		},
	} {
		req, err := http.NewRequest(http.MethodPost, a.URL+"/cascade/v1/trunk", bytes.NewReader([]byte(`{"node":"b","offer":"v=0"}`)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s trunk request: %s, want 401", name, resp.Status)
		}
	}
}

// TestCascadeThreeFoci is the scenario on three processes: a
// publisher on A watched on B and C; ten viewers on B make one trunk
// subscription per track; a publisher on every focus, every viewer gets
// every track once; B killed, its tracks gone from A and C within 5 s
// while A and C carry on; B restarted and used again.
func TestCascadeThreeFoci(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	a := startCascadeNode(t, "a")
	b := startCascadeNode(t, "b", a.gossip)
	c := startCascadeNode(t, "c", a.gossip)
	nodes := []*cascadeNode{a, b, c}
	waitMesh(ctx, t, nodes, "a", "b", "c")
	t.Log("mesh of a, b, c formed")
	baseline := goroutines(ctx, t, a)

	const room = "cascade"
	pa := publish(ctx, t, a, room)
	idA := publisherID(pa)
	vb := view(ctx, t, b, room, idA)
	vc := view(ctx, t, c, room, idA)
	waitMedia(ctx, t, "viewer on b of a", vb, cascadeMedia)
	waitMedia(ctx, t, "viewer on c of a", vc, cascadeMedia)
	t.Log("viewers on b and c receive a's publisher")

	// Ten viewers on B, one trunk subscription per track of A's publisher.
	for i := range 10 {
		waitMedia(ctx, t, fmt.Sprintf("viewer %d on b", i), view(ctx, t, b, room, idA), 10)
	}
	if got := trunkSubscriptions(ctx, t, b, "a"); got != 2 {
		t.Errorf("b pulls %d tracks from a for 11 viewers, want 2 (audio and video, once each)", got)
	}

	// A publisher on every focus; on every focus a viewer of each.
	pb := publish(ctx, t, b, room)
	pc := publish(ctx, t, c, room)
	ids := map[string]string{"a": idA, "b": publisherID(pb), "c": publisherID(pc)}
	viewers := map[string]*testclient.Viewer{}
	for _, n := range nodes {
		for origin, id := range ids {
			viewers[n.Name+"<-"+origin] = view(ctx, t, n, room, id)
		}
	}
	for what, v := range viewers {
		waitMedia(ctx, t, what, v, cascadeMedia)
	}
	for what, v := range viewers {
		checkOnce(t, what, v)
	}
	t.Log("full mesh: every viewer gets every publisher's tracks once")

	// B dies. Its publisher leaves A and C within 5 s; A's publisher
	// still reaches C.
	b.Kill()
	killed := time.Now()
	for _, n := range []*cascadeNode{a, c} {
		for {
			if !slices.Contains(publishedIn(ctx, t, n, room), ids["b"]) {
				break
			}
			if time.Since(killed) > cascadeGone {
				t.Fatalf("%s still shows b's publisher %v after b was killed", n.Name, time.Since(killed).Round(time.Millisecond))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("b's publisher gone from a and c %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	before := viewers["c<-a"].Stats().Video.Packets
	waitMedia(ctx, t, "viewer on c of a after b died", viewers["c<-a"], before+cascadeMedia)

	// B comes back, rejoins, and is used again.
	b.Restart()
	waitMesh(ctx, t, nodes, "a", "b", "c")
	pb2 := publish(ctx, t, b, room)
	vb2 := view(ctx, t, a, room, publisherID(pb2))
	waitMedia(ctx, t, "viewer on a of b's new publisher", vb2, cascadeMedia)
	t.Log("b restarted, rejoined and used again")

	// Everyone leaves: a is back to what it ran before the call, give or
	// take memberlist's and the runtime's own.
	for _, c := range []interface{ Close() error }{pa, pb, pc, pb2, vb, vc, vb2} {
		_ = c.Close()
	}
	for _, v := range viewers {
		_ = v.Close()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := goroutines(ctx, t, a)
		if n <= baseline+10 {
			t.Logf("a runs %d goroutines after the call, %d before it", n, baseline)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a runs %d goroutines 15 s after everyone left, %d before the call; a's status %+v; goroutines:\n%s",
				n, baseline, a.mesh(ctx, t).Cascade, goroutineDump(ctx, a))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// goroutineProfile is n's goroutine profile as text, from /debug/pprof.
func goroutineProfile(ctx context.Context, n *cascadeNode) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

// goroutineDump is n's goroutine profile, one line per stack with its
// count and the function it waits in, for a failure message.
func goroutineDump(ctx context.Context, n *cascadeNode) string {
	p, err := goroutineProfile(ctx, n)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, block := range strings.Split(p, "\n\n") {
		// "N @ addrs", then frames "#\taddr\tfunc+off\tfile:line".
		lines := strings.Split(block, "\n")
		if len(lines) < 2 {
			continue
		}
		head, frame := strings.Fields(lines[0]), strings.Fields(lines[1])
		if len(head) > 0 && len(frame) > 2 {
			out = append(out, head[0]+" "+frame[2])
		}
	}
	return strings.Join(out, "\n")
}

// goroutines reads n's goroutine count from /debug/pprof.
func goroutines(ctx context.Context, t *testing.T, n *cascadeNode) int {
	t.Helper()
	p, err := goroutineProfile(ctx, n)
	if err != nil {
		t.Fatalf("%s: goroutine profile: %v", n.Name, err)
	}
	var total int
	if _, err := fmt.Sscanf(p, "goroutine profile: total %d", &total); err != nil {
		t.Fatalf("%s: goroutine profile: %v", n.Name, err)
	}
	return total
}
