package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/focus-sfu/focus/internal/focustest"
	"github.com/focus-sfu/focus/internal/testclient"
)

// These tests run a real focus in-process and drive it over WHIP and WHEP
// with pion clients on loopback (internal/testclient). Bounds are generous:
// they catch media that never arrives, not media that is slow.

const (
	deliveryVideo = webrtc.RTPCodecTypeVideo
	deliveryAudio = webrtc.RTPCodecTypeAudio
)

// TestDeliveryFanOut: one publisher, twenty viewers; every viewer gets both
// kinds, starts at a keyframe, and sees an unbroken, unaltered stream.
func TestDeliveryFanOut(t *testing.T) {
	const viewers = 20
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := focustest.Start(t, nil).URL

	pub := deliveryPublish(ctx, t, base, "fanout", testclient.PublishOptions{})
	waitDeliveryTracks(ctx, t, base, "fanout", 2)

	vs := make([]*testclient.Viewer, viewers)
	setup := make([]time.Duration, viewers)
	var wg sync.WaitGroup
	errs := make([]error, viewers)
	for i := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			v, err := testclient.View(ctx, base, "fanout", testclient.ViewOptions{})
			if err != nil {
				errs[i] = err
				return
			}
			vs[i] = v
			if err := v.WaitPackets(ctx, deliveryVideo, 1); err != nil {
				errs[i] = err
				return
			}
			setup[i] = v.Stats().Video.FirstAt.Sub(start)
		}()
	}
	wg.Wait()
	for i, v := range vs {
		if v != nil {
			t.Cleanup(func() { closeDelivery(t, "viewer", v.Close) })
		}
		if errs[i] != nil {
			t.Fatalf("viewer %d: %v", i, errs[i])
		}
	}

	// Three seconds of media at 100 video and 50 audio packets a second.
	for i, v := range vs {
		for _, k := range []struct {
			kind webrtc.RTPCodecType
			n    int
		}{{deliveryVideo, 300}, {deliveryAudio, 150}} {
			if err := v.WaitPackets(ctx, k.kind, k.n); err != nil {
				t.Fatalf("viewer %d: %v", i, err)
			}
		}
	}
	var slowest time.Duration
	var maxDelay time.Duration
	keyframeMisses := 0
	for i, v := range vs {
		st := v.Stats()
		checkDeliveryStream(t, fmt.Sprintf("viewer %d video", i), st.Video, 1)
		checkDeliveryStream(t, fmt.Sprintf("viewer %d audio", i), st.Audio, 1)
		if !st.Video.FirstKeyframe {
			f := st.Video.First[0]
			t.Errorf("viewer %d: first video packet is not a keyframe start: counter %d, received %v after connecting",
				i, f.Counter, f.At.Sub(v.ConnectedAt()))
			keyframeMisses++
		}
		slowest = max(slowest, setup[i])
		maxDelay = max(maxDelay, st.Video.MaxDelay, st.Audio.MaxDelay)
	}
	ps := pub.Stats()
	if keyframeMisses > 0 {
		for _, k := range ps.KeyframeLog {
			t.Logf("publisher keyframe at %s: counter %d, requested %v", k.At.Format("15:04:05.000000"), k.Counter, k.Requested)
		}
		for i, v := range vs {
			t.Logf("viewer %d connected at %s, first video packet at %s",
				i, v.ConnectedAt().Format("15:04:05.000000"), v.Stats().Video.FirstAt.Format("15:04:05.000000"))
		}
	}
	st := vs[0].Stats()
	t.Logf("publisher sent %d video, %d audio packets, %d keyframes, got %d PLIs, %d NACKs",
		ps.VideoPackets, ps.AudioPackets, ps.Keyframes, ps.PLIs, ps.NACKs)
	t.Logf("viewer 0 got %d video, %d audio packets; mean delay video %v audio %v; max delay over all viewers %v; slowest offer-to-first-video %v",
		st.Video.Packets, st.Audio.Packets, st.Video.MeanDelay, st.Audio.MeanDelay, maxDelay, slowest)
}

// TestDeliveryLateJoinKeyframe: a viewer joining a running stream whose
// own keyframes are far apart starts at a keyframe that the focus asked
// for with a PLI.
func TestDeliveryLateJoinKeyframe(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := focustest.Start(t, nil).URL

	// Only the very first frame is a keyframe unless someone asks.
	pub := deliveryPublish(ctx, t, base, "late", testclient.PublishOptions{KeyframeInterval: time.Hour})
	waitDeliveryTracks(ctx, t, base, "late", 2)
	time.Sleep(3 * time.Second)
	before := pub.Stats()

	start := time.Now()
	v := deliveryView(ctx, t, base, "late", testclient.ViewOptions{})
	if err := v.WaitPackets(ctx, deliveryVideo, 1); err != nil {
		t.Fatal(err)
	}
	first := v.Stats().Video.FirstAt.Sub(start)
	if err := v.WaitPackets(ctx, deliveryVideo, 100); err != nil {
		t.Fatal(err)
	}
	after := pub.Stats()
	st := v.Stats()
	if !st.Video.FirstKeyframe {
		t.Errorf("late viewer's first video packet is not a keyframe start")
	}
	if after.PLIs+after.FIRs <= before.PLIs+before.FIRs {
		t.Errorf("publisher saw no PLI or FIR for the late viewer (PLIs %d→%d, FIRs %d→%d)",
			before.PLIs, after.PLIs, before.FIRs, after.FIRs)
	}
	checkDeliveryStream(t, "late viewer video", st.Video, 1)
	t.Logf("offer to first video packet: %v; publisher PLIs %d→%d, keyframes sent %d→%d",
		first, before.PLIs, after.PLIs, before.Keyframes, after.Keyframes)
}

// TestDeliveryPublisherRestart: a publisher that leaves and comes back to
// the same room is picked up by the viewers already there, without an
// SSRC change or a break in their sequence numbers.
func TestDeliveryPublisherRestart(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := focustest.Start(t, nil).URL

	pub1 := deliveryPublish(ctx, t, base, "restart", testclient.PublishOptions{})
	waitDeliveryTracks(ctx, t, base, "restart", 2)
	var vs []*testclient.Viewer
	for range 3 {
		vs = append(vs, deliveryView(ctx, t, base, "restart", testclient.ViewOptions{}))
	}
	for i, v := range vs {
		if err := v.WaitPackets(ctx, deliveryVideo, 150); err != nil {
			t.Fatalf("viewer %d before restart: %v", i, err)
		}
		if err := v.WaitPackets(ctx, deliveryAudio, 50); err != nil {
			t.Fatalf("viewer %d before restart: %v", i, err)
		}
	}
	if err := pub1.Close(); err != nil {
		t.Fatalf("first publisher Close: %v", err)
	}
	switched := time.Now()
	pub2 := deliveryPublish(ctx, t, base, "restart", testclient.PublishOptions{})
	_ = pub2

	for i, v := range vs {
		waitDelivery(ctx, t, fmt.Sprintf("viewer %d to receive the second publisher", i), func() bool {
			st := v.Stats()
			return st.Video.Sessions >= 2 && st.Audio.Sessions >= 2
		})
	}
	followed := time.Since(switched)
	// And a good while of the new stream.
	for i, v := range vs {
		n := v.Stats()
		if err := v.WaitPackets(ctx, deliveryVideo, n.Video.Packets+150); err != nil {
			t.Fatalf("viewer %d after restart: %v", i, err)
		}
		if err := v.WaitPackets(ctx, deliveryAudio, n.Audio.Packets+50); err != nil {
			t.Fatalf("viewer %d after restart: %v", i, err)
		}
	}
	for i, v := range vs {
		st := v.Stats()
		for _, k := range []struct {
			name string
			s    testclient.TrackStats
		}{{"video", st.Video}, {"audio", st.Audio}} {
			name := fmt.Sprintf("viewer %d %s", i, k.name)
			checkDeliveryStream(t, name, k.s, 2)
			if len(k.s.SSRCs) != 1 || k.s.SSRCChanges != 0 {
				t.Errorf("%s: SSRC changed across the restart: %x (%d changes)", name, k.s.SSRCs, k.s.SSRCChanges)
			}
		}
		if st.Video.SessionKeyframeStarts != 2 {
			t.Errorf("viewer %d: %d of 2 video sessions began at a keyframe", i, st.Video.SessionKeyframeStarts)
		}
	}
	t.Logf("viewers were receiving the new publisher %v after the first one closed", followed)
}

// TestDeliveryVanished: a viewer and a publisher that disappear without a
// DELETE are cleaned up within 45 s, while the other viewers keep
// receiving.
func TestDeliveryVanished(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	base := focustest.Start(t, nil).URL

	deliveryPublish(ctx, t, base, "stay", testclient.PublishOptions{})
	waitDeliveryTracks(ctx, t, base, "stay", 2)
	gone := deliveryPublish(ctx, t, base, "gone", testclient.PublishOptions{})
	waitDeliveryTracks(ctx, t, base, "gone", 2)
	goneID := resourceID(gone.Resource())

	var vs []*testclient.Viewer
	for range 3 {
		vs = append(vs, deliveryView(ctx, t, base, "stay", testclient.ViewOptions{}))
	}
	for i, v := range vs {
		if err := v.WaitPackets(ctx, deliveryVideo, 50); err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
	}
	waitDeliveryRooms(ctx, t, base, "3 viewers in room stay", func(rooms map[string]deliveryRoom) bool {
		return rooms["stay"].Viewers == 3
	})

	vanished := time.Now()
	if err := vs[2].Vanish(); err != nil {
		t.Fatalf("viewer Vanish: %v", err)
	}
	if err := gone.Vanish(); err != nil {
		t.Fatalf("publisher Vanish: %v", err)
	}
	stayed := vs[:2]
	before := make([]int, len(stayed))
	for i, v := range stayed {
		before[i] = v.Stats().Video.Packets
	}

	cleanCtx, cleanCancel := context.WithTimeout(ctx, 45*time.Second)
	defer cleanCancel()
	var viewerGone, publisherGone time.Duration
	waitDeliveryRooms(cleanCtx, t, base, "the vanished viewer and publisher to be dropped", func(rooms map[string]deliveryRoom) bool {
		if viewerGone == 0 && rooms["stay"].Viewers == 2 {
			viewerGone = time.Since(vanished)
		}
		if publisherGone == 0 && !rooms["gone"].hasPublisher(goneID) {
			publisherGone = time.Since(vanished)
		}
		return viewerGone != 0 && publisherGone != 0
	})
	if n := len(deliveryGetRooms(ctx, t, base)["stay"].Publishers); n != 1 {
		t.Errorf("room stay has %d publishers after the cleanup, want 1", n)
	}

	// The remaining viewers kept receiving the whole time: at 100 pps,
	// the cleanup took long enough for many packets, with no break.
	for i, v := range stayed {
		if err := v.WaitPackets(ctx, deliveryVideo, before[i]+100); err != nil {
			t.Fatalf("remaining viewer %d: %v", i, err)
		}
		st := v.Stats()
		checkDeliveryStream(t, fmt.Sprintf("remaining viewer %d video", i), st.Video, 1)
		checkDeliveryStream(t, fmt.Sprintf("remaining viewer %d audio", i), st.Audio, 1)
		if got := st.Video.Packets - before[i]; time.Since(vanished) > 5*time.Second && got < 100 {
			t.Errorf("remaining viewer %d got only %d video packets during the cleanup", i, got)
		}
	}
	t.Logf("vanished viewer dropped after %v, vanished publisher after %v", viewerGone, publisherGone)
}

// TestDeliveryNoLeaks: shutting the focus down under load and then
// closing every client leaves no goroutine behind, on either side.
func TestDeliveryNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	focus := focustest.Start(t, nil)
	base := focus.URL

	pub, err := testclient.Publish(ctx, base, "leak", testclient.PublishOptions{})
	if err != nil {
		focus.Stop()
		t.Fatalf("Publish: %v", err)
	}
	waitDeliveryTracks(ctx, t, base, "leak", 2)
	var vs []*testclient.Viewer
	for i := range 3 {
		v, err := testclient.View(ctx, base, "leak", testclient.ViewOptions{})
		if err != nil {
			t.Errorf("viewer %d: %v", i, err)
			break
		}
		vs = append(vs, v)
		if err := v.WaitPackets(ctx, deliveryVideo, 50); err != nil {
			t.Errorf("viewer %d: %v", i, err)
		}
	}
	// One viewer leaves properly, one vanishes, one is still there when the
	// focus stops.
	if len(vs) == 3 {
		if err := vs[0].Close(); err != nil {
			t.Errorf("viewer Close: %v", err)
		}
		if err := vs[1].Vanish(); err != nil {
			t.Errorf("viewer Vanish: %v", err)
		}
	}
	focus.Stop()
	// The focus is gone, so DELETEs fail; only the local teardown matters.
	_ = pub.Close()
	for _, v := range vs {
		_ = v.Close()
	}
	goleak.VerifyNone(t, ignore)
}

// checkDeliveryStream holds one kind of media to the loopback standard:
// nothing lost, duplicated, altered or out of order, and the expected
// number of publisher sessions seen.
func checkDeliveryStream(t *testing.T, name string, s testclient.TrackStats, sessions int) {
	t.Helper()
	if s.Packets == 0 {
		t.Errorf("%s: no packets", name)
		return
	}
	if q := s.Seq; q.Gaps != 0 || q.Missing != 0 || q.Duplicates != 0 || q.Late != 0 {
		t.Errorf("%s: sequence numbers not continuous: %+v", name, q)
	}
	if s.Corrupt != 0 || s.Intact != s.Packets {
		t.Errorf("%s: %d of %d payloads altered", name, s.Corrupt, s.Packets)
	}
	if s.VP8Errors != 0 {
		t.Errorf("%s: %d invalid VP8 payloads", name, s.VP8Errors)
	}
	if s.CounterGaps != 0 {
		t.Errorf("%s: %d publisher packets missing (dropped before renumbering)", name, s.CounterGaps)
	}
	if s.TimestampRegressions != 0 {
		t.Errorf("%s: RTP timestamp went backwards %d times", name, s.TimestampRegressions)
	}
	if s.Sessions != sessions {
		t.Errorf("%s: saw %d publisher sessions, want %d", name, s.Sessions, sessions)
	}
}

// deliveryLeakCheck fails the test if goroutines started during it are
// still running once its cleanups (clients, then the focus) are done. It
// must be called first so that its cleanup runs last.
func deliveryLeakCheck(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func deliveryPublish(ctx context.Context, t *testing.T, base, room string, opts testclient.PublishOptions) *testclient.Publisher {
	t.Helper()
	p, err := testclient.Publish(ctx, base, room, opts)
	if err != nil {
		t.Fatalf("Publish to %q: %v", room, err)
	}
	t.Cleanup(func() { closeDelivery(t, "publisher", p.Close) })
	return p
}

func deliveryView(ctx context.Context, t *testing.T, base, room string, opts testclient.ViewOptions) *testclient.Viewer {
	t.Helper()
	v, err := testclient.View(ctx, base, room, opts)
	if err != nil {
		t.Fatalf("View %q: %v", room, err)
	}
	t.Cleanup(func() { closeDelivery(t, "viewer", v.Close) })
	return v
}

// closeDelivery closes a client at the end of a test. A client that
// already left or vanished has nothing more to do; a DELETE the focus
// refuses is an error.
func closeDelivery(t *testing.T, what string, closeFn func() error) {
	if err := closeFn(); err != nil {
		t.Errorf("%s Close: %v", what, err)
	}
}

// deliveryRoom is one room of GET /api/rooms.
type deliveryRoom struct {
	Name       string `json:"name"`
	Publishers []struct {
		ID     string `json:"id"`
		Tracks []struct {
			ID      string `json:"id"`
			Kind    string `json:"kind"`
			Codec   string `json:"codec"`
			Bitrate uint64 `json:"bitrate"`
		} `json:"tracks"`
	} `json:"publishers"`
	Viewers int `json:"viewers"`
}

func (r deliveryRoom) hasPublisher(id string) bool {
	for _, p := range r.Publishers {
		if p.ID == id {
			return true
		}
	}
	return false
}

func deliveryGetRooms(ctx context.Context, t *testing.T, base string) map[string]deliveryRoom {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/rooms", nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET /api/rooms: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/rooms: status %d", resp.StatusCode)
	}
	var body struct {
		Rooms []deliveryRoom `json:"rooms"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /api/rooms: decode: %v", err)
	}
	out := make(map[string]deliveryRoom, len(body.Rooms))
	for _, r := range body.Rooms {
		out[r.Name] = r
	}
	return out
}

// waitDeliveryRooms polls GET /api/rooms until cond holds.
func waitDeliveryRooms(ctx context.Context, t *testing.T, base, what string, cond func(map[string]deliveryRoom) bool) {
	t.Helper()
	var last map[string]deliveryRoom
	for {
		last = deliveryGetRooms(ctx, t, base)
		if cond(last) {
			return
		}
		select {
		case <-ctx.Done():
			b, _ := json.Marshal(last)
			t.Fatalf("waiting for %s: %v; rooms: %s", what, ctx.Err(), b)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitDeliveryTracks waits until the room's newest publisher has n tracks:
// the focus publishes a track when its first packet arrives, and a viewer
// can only subscribe after that.
func waitDeliveryTracks(ctx context.Context, t *testing.T, base, room string, n int) {
	t.Helper()
	waitDeliveryRooms(ctx, t, base, fmt.Sprintf("%d tracks in room %q", n, room), func(rooms map[string]deliveryRoom) bool {
		ps := rooms[room].Publishers
		return len(ps) > 0 && len(ps[len(ps)-1].Tracks) >= n
	})
}

func waitDelivery(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// resourceID is the last path element of a WHIP/WHEP resource URL: the
// session ID that /api/rooms lists.
func resourceID(resource string) string {
	return resource[strings.LastIndex(resource, "/")+1:]
}
