package cascade

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/internal/testclient"
	"github.com/focus-sfu/focus/whip"
)

// TestTwoFoci: a publisher on A is seen by viewers on B with media
// arriving through one trunk; ten viewers make one subscription per
// track; keyframe requests reach the publisher through the trunk; when
// the viewers leave, the tracks are unsubscribed after the grace, and
// the idle trunk closes.
func TestTwoFoci(t *testing.T) {
	m := newFakeMesh()
	a := startNode(t, m, "a")
	const idle = 1500 * time.Millisecond
	b := startNode(t, m, "b", func(_ *Options, tm *timing) { tm.idle = idle })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Keyframes only on request: a viewer on B sees video only if its
	// keyframe request crossed the trunk.
	pub, err := testclient.Publish(ctx, a.url, "r", testclient.PublishOptions{KeyframeInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	v, err := testclient.ViewWhenPublished(ctx, b.url, "r", testclient.ViewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if err := v.WaitPackets(ctx, k, 50); err != nil {
			t.Fatal(err)
		}
	}
	st := v.Stats()
	if !st.Video.FirstKeyframe || st.Video.Corrupt > 0 || st.Audio.Corrupt > 0 {
		t.Errorf("viewer on b: first packet a keyframe %v, corrupt video %d audio %d", st.Video.FirstKeyframe, st.Video.Corrupt, st.Audio.Corrupt)
	}
	if len(st.Video.TrackIDs) != 1 || len(st.Audio.TrackIDs) != 1 {
		t.Errorf("viewer on b: video tracks %v, audio tracks %v; want one each", st.Video.TrackIDs, st.Audio.TrackIDs)
	}

	plis := pub.PLIs()
	more := make([]*testclient.Viewer, 0, 9)
	for range 9 {
		v, err := testclient.View(ctx, b.url, "r", testclient.ViewOptions{})
		if err != nil {
			t.Fatal(err)
		}
		more = append(more, v)
	}
	for _, v := range more {
		if err := v.WaitPackets(ctx, webrtc.RTPCodecTypeVideo, 20); err != nil {
			t.Fatal(err)
		}
	}
	// Each new viewer starts at a keyframe, asked of the publisher on a
	// itself, through the trunk.
	if pub.PLIs() <= plis {
		t.Errorf("the publisher got no keyframe request for the viewers on b (%d before, %d after)", plis, pub.PLIs())
	}
	if s := b.cascade.Stats(); s.Subscriptions != 2 || s.TrunksOpen != 1 {
		t.Errorf("b with ten viewers: %d subscriptions over %d trunks, want 2 over 1", s.Subscriptions, s.TrunksOpen)
	}
	if s := a.cascade.Stats(); s.Exports != 2 {
		t.Errorf("a: %d exports, want 2", s.Exports)
	}
	ts, ok := b.trunkTo("a", "pull")
	if !ok || ts.State != "open" || len(ts.Tracks) != 2 || ts.PacketsIn == 0 || ts.BytesIn == 0 {
		t.Errorf("b's trunk to a: %+v", ts)
	}
	// Packets of the one publisher: none lost or doubled on the way.
	sent := pub.Stats().VideoPackets
	got := v.Stats().Video.Packets
	// Every packet the viewer got crossed the trunk; the trunk's
	// counters include the RTP that skips pion (rtc's direct path).
	if ts, ok := a.trunkTo("b", "export"); !ok || len(ts.Tracks) != 2 || ts.PacketsOut < uint64(got) {
		t.Errorf("a's trunk to b, after the viewer got %d video packets: %+v", got, ts)
	}
	if got > int(sent) || got < int(sent)/2 {
		t.Errorf("viewer on b received %d video packets of the %d sent", got, sent)
	}

	left := time.Now()
	for _, v := range append(more, v) {
		_ = v.Close()
	}
	eventually(t, 10*time.Second, "b unsubscribes when its viewers left", func() bool {
		return b.cascade.Stats().Subscriptions == 0 && a.cascade.Stats().Exports == 0
	})
	if el := time.Since(left); el < defaultTiming().grace {
		t.Errorf("unsubscribed %v after the viewers left, before the %v grace", el, defaultTiming().grace)
	}
	// The proxies stay; the trunk closes when idle, on both sides.
	unsubscribed := time.Now()
	eventually(t, idle+2*time.Second, "the idle trunk closes", func() bool {
		return len(b.cascade.Status().Trunks) == 0 && len(a.cascade.Status().Trunks) == 0
	})
	if el := time.Since(unsubscribed); el < idle-200*time.Millisecond {
		t.Errorf("the trunk closed %v after its last pull, before the %v idle time", el, idle)
	}
	if ps := b.proxiesFrom(whip.ConferenceID("r"), "a"); len(ps) != 1 || len(ps[0].Tracks()) != 2 {
		t.Errorf("b's proxies of a after the viewers left: %d", len(ps))
	}
	if f := a.cascade.Stats().HeartbeatFailures + b.cascade.Stats().HeartbeatFailures; f != 0 {
		t.Errorf("%d heartbeat failures", f)
	}
	if st := b.cascade.Status(); len(st.HeldBack) != 0 {
		t.Errorf("b holds back %v after closing an idle trunk", st.HeldBack)
	}
}

// TestFullMeshOfThree: a publisher on each of three foci, and on each
// focus a viewer of each remote publisher. Every viewer gets its
// publisher's tracks once, at the rate they are sent; every focus pulls
// each remote track once, exports each of its own to each other focus,
// and shows each track once (no proxy of a proxy); a proxy track is
// refused for export.
func TestFullMeshOfThree(t *testing.T) {
	m := newFakeMesh()
	names := []string{"a", "b", "c"}
	nodes := map[string]*node{}
	for _, n := range names {
		nodes[n] = startNode(t, m, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conf := whip.ConferenceID("r")
	pubs := map[string]*testclient.Publisher{}
	pubIDs := map[string]string{} // publisher's participant ID by its focus
	for _, n := range names {
		p, err := testclient.Publish(ctx, nodes[n].url, "r", testclient.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pubs[n] = p
		id := p.Resource()[strings.LastIndex(p.Resource(), "/")+1:]
		pubIDs[n] = id
	}
	for _, x := range names {
		for _, o := range names {
			if o == x {
				continue
			}
			eventually(t, 10*time.Second, x+" shows "+o+"'s publisher", func() bool {
				p := nodes[x].sfu.Conference(conf)
				if p == nil {
					return false
				}
				pp := p.Participant(focus.ParticipantID(pubIDs[o]))
				return pp != nil && pp.Info().Origin == o && len(pp.Tracks()) == 2
			})
		}
	}

	type watch struct {
		at, of string
		v      *testclient.Viewer
	}
	var watches []watch
	for _, x := range names {
		for _, o := range names {
			if o == x {
				continue
			}
			v, err := testclient.View(ctx, nodes[x].url, "r", testclient.ViewOptions{Stream: pubIDs[o]})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			watches = append(watches, watch{x, o, v})
		}
	}
	for _, w := range watches {
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if err := w.v.WaitPackets(ctx, k, 30); err != nil {
				t.Fatalf("viewer on %s of %s's publisher: %v", w.at, w.of, err)
			}
		}
	}

	// Over a window, each viewer receives what its publisher sends,
	// once.
	type count struct{ sent, got int }
	start := map[int]count{}
	for i, w := range watches {
		start[i] = count{int(pubs[w.of].Stats().VideoPackets), w.v.Stats().Video.Packets}
	}
	eventually(t, 10*time.Second, "a window of 200 video packets", func() bool {
		return int(pubs["a"].Stats().VideoPackets)-start[0].sent >= 200
	})
	for i, w := range watches {
		sent := int(pubs[w.of].Stats().VideoPackets) - start[i].sent
		got := w.v.Stats().Video.Packets - start[i].got
		st := w.v.Stats()
		if got < sent*8/10 || got > sent*11/10+5 || len(st.Video.TrackIDs) != 1 || len(st.Audio.TrackIDs) != 1 {
			t.Errorf("viewer on %s of %s's publisher: %d video packets of %d sent; tracks %v %v",
				w.at, w.of, got, sent, st.Video.TrackIDs, st.Audio.TrackIDs)
		}
	}

	for _, x := range names {
		n := nodes[x]
		if s := n.cascade.Stats(); s.Subscriptions != 4 || s.Exports != 4 || s.TrunksOpen != 4 {
			t.Errorf("%s: %d subscriptions, %d exports, %d trunks open; want 4, 4, 4", x, s.Subscriptions, s.Exports, s.TrunksOpen)
		}
		seen := map[focus.TrackID]int{}
		for _, up := range n.sfu.Conference(conf).Tracks() {
			seen[up.ID()]++
			if o := up.Owner().Info().Origin; o != "" && up.Owner().ID() != focus.ParticipantID(pubIDs[o]) {
				t.Errorf("%s: track %s of %s comes from %s, not its home", x, up.ID(), up.Owner().ID(), o)
			}
		}
		if len(seen) != 6 {
			t.Errorf("%s shows %d tracks, want 6", x, len(seen))
		}
		for id, k := range seen {
			if k != 1 {
				t.Errorf("%s shows track %s %d times", x, id, k)
			}
		}
	}

	// c pulls from b; a proxy on b (of a's publisher) is not for export.
	var proxied string
	for _, up := range nodes["b"].sfu.Conference(conf).Tracks() {
		if up.Owner().Info().Origin == "a" {
			proxied = string(up.ID())
		}
	}
	pull := nodes["c"].cascade.pullTrunk("b")
	if pull == nil || proxied == "" {
		t.Fatalf("c's trunk to b %v, a's track on b %q", pull, proxied)
	}
	rawSend(t, pull, `{"version":1,"type":"subscribe","conference":"whip:r","track":"`+proxied+`"}`)
	eventually(t, 5*time.Second, "b refuses to export a proxy track", func() bool {
		return countLog(nodes["c"], `"code":"`+codeNotExportable+`"`) > 0 && countLog(nodes["b"], `"code":"`+codeNotExportable+`"`) > 0
	})
}

// TestHeartbeatDeath: the exporting focus vanishes (its port closed,
// its HTTP gone, the directory still listing it). The puller's trunk
// dies of silence and takes the focus's proxies within 5 s; they stay
// away while it cannot be reached, and come back with the focus,
// restarted under its name, whose media then reaches the viewer again.
func TestHeartbeatDeath(t *testing.T) {
	m := newFakeMesh()
	a := startNode(t, m, "a")
	b := startNode(t, m, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conf := whip.ConferenceID("r")
	pub, v := publishAndView(ctx, t, a, b)
	defer pub.Vanish()
	defer v.Close()

	killed := time.Now()
	a.kill()
	eventually(t, 5*time.Second, "b removes a's proxies", func() bool {
		return len(b.proxiesFrom(conf, "a")) == 0
	})
	t.Logf("a's proxies gone %v after a vanished", time.Since(killed).Round(time.Millisecond))
	if time.Since(killed) < defaultTiming().dead {
		t.Errorf("proxies gone after %v, sooner than the heartbeat's %v", time.Since(killed), defaultTiming().dead)
	}
	st := b.cascade.Status()
	if s := b.cascade.Stats(); s.HeartbeatFailures != 1 || s.ProxyParticipants != 0 || s.Subscriptions != 0 {
		t.Errorf("b after a vanished: %+v", s)
	}
	if len(st.HeldBack) != 1 || st.HeldBack[0] != "a" {
		t.Errorf("b holds back %v, want [a]", st.HeldBack)
	}
	if c := countLog(b, `"message":"trunk died; the focus's proxies are removed until a new trunk is up"`); c != 1 {
		t.Errorf("b logged the trunk's death %d times", c)
	}

	// a comes back under its name (a new process: new ports), with a
	// new publisher; the viewer on b follows it.
	a2 := startNode(t, m, "a")
	pub2, err := testclient.Publish(ctx, a2.url, "r", testclient.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub2.Close()
	before := v.Stats().Video.Packets
	eventually(t, 15*time.Second, "the viewer on b gets video from a again", func() bool {
		return v.Stats().Video.Packets > before+20
	})
	if ps := b.proxiesFrom(conf, "a"); len(ps) != 1 || len(ps[0].Tracks()) != 2 {
		t.Errorf("b proxies %d participants of a after its restart", len(ps))
	}
	if st := b.cascade.Status(); len(st.HeldBack) != 0 {
		t.Errorf("b still holds back %v", st.HeldBack)
	}
}
