package cascade

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/internal/testclient"
	"github.com/focus-sfu/focus/whip"
)

// TestTwoFoci: a publisher on A is seen by viewers on B with media
// arriving through one trunk; ten viewers make one subscription per
// track; keyframe requests reach the publisher through the trunk; when
// the viewers leave, the tracks are unsubscribed after the grace.
func TestTwoFoci(t *testing.T) {
	m := newFakeMesh()
	a := startNode(t, m, "a")
	b := startNode(t, m, "b")
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
	if ts, ok := a.trunkTo("b", "export"); !ok || len(ts.Tracks) != 2 || ts.PacketsOut == 0 {
		t.Errorf("a's trunk to b: %+v", ts)
	}
	// Packets of the one publisher: none lost or doubled on the way.
	sent := pub.Stats().VideoPackets
	got := v.Stats().Video.Packets
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
	// The trunk stays (idle), and so do the proxies.
	if ps := b.proxiesFrom(whip.ConferenceID("r"), "a"); len(ps) != 1 || len(ps[0].Tracks()) != 2 {
		t.Errorf("b's proxies of a after the viewers left: %d", len(ps))
	}
}
