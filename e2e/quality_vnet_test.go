package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/internal/focustest"
	"github.com/focus-sfu/focus/internal/vnettest"
	"github.com/focus-sfu/focus/whip"
)

// The media-quality tests: the real core (focus.SFU with its control
// loop on the real clock), the real WHIP/WHEP front-end over HTTP on
// loopback, and the engine and both clients on a pion virtual network
// whose path to the subscriber the test shapes (internal/vnettest). The
// publisher sends synthetic VP8 simulcast (q, h, f: 320x180 at
// 150 kbit/s, 640x360 at 500 kbit/s, 1280x720 at 1.2 Mbit/s); the
// subscriber is a pion client that negotiates RTX and sends NACKs and
// transport-wide feedback as a browser does, and records every packet
// with the layer and counter the publisher wrote into it.
//
// Bounds are at least three times the targets of docs/media-quality.md;
// the measured figures are logged.

// qualityRig is one focus on a virtual network, with its WHIP/WHEP
// front-end served over HTTP.
type qualityRig struct {
	nw  *vnettest.Network
	api *webrtc.API
	url string // of the HTTP server, no trailing slash
}

// startQualityRig builds the network, the engine, the core and the
// front-end; everything is closed when the test ends (clients first,
// then the focus, then the network), and then no goroutine may be left.
func startQualityRig(t *testing.T, seed uint64) *qualityRig {
	t.Helper()
	deliveryLeakCheck(t)
	logs := focustest.NewLog(t)
	t.Cleanup(logs.Report)
	log := logs.Logger()

	nw, err := vnettest.New(vnettest.Options{Delay: 10 * time.Millisecond, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nw.Close(); err != nil {
			t.Errorf("close network: %v", err)
		}
	})
	engine, err := nw.Engine(log.With().Str("component", "rtc").Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	sfu := focus.New(focus.Options{Log: log.With().Str("component", "focus").Logger()})
	t.Cleanup(sfu.Close)
	srv, err := whip.New(whip.Options{Engine: engine, SFU: sfu, Log: log.With().Str("component", "whip").Logger()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close whip: %v", err)
		}
	})
	api, err := nw.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	return &qualityRig{nw: nw, api: api, url: hs.URL}
}

// publish starts the simulcast publisher in room and lets the focus
// measure its layers for a second, as it would have by the time anyone
// watches.
func (r *qualityRig) publish(ctx context.Context, t *testing.T, room string) *vnettest.Publisher {
	t.Helper()
	p, err := vnettest.Publish(ctx, r.api, r.url+"/whip/"+room, vnettest.SimulcastLayers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close publisher: %v", err)
		}
	})
	time.Sleep(time.Second)
	return p
}

func (r *qualityRig) view(ctx context.Context, t *testing.T, room string) *vnettest.Viewer {
	t.Helper()
	v, err := vnettest.View(ctx, r.api, r.url+"/whep/"+room)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("close viewer: %v", err)
		}
	})
	return v
}

// TestQualityBandwidthCap: a subscriber watching the top layer gets a
// 400 kbit/s link; it settles on the low layer (150 kbit/s) and its
// picture does not freeze once there. When the cap is lifted it climbs
// back to the top layer.
func TestQualityBandwidthCap(t *testing.T) {
	const (
		capRate   = 400_000
		capWindow = 20 * time.Second
		// The subscriber must have settled this long before the cap is
		// lifted: the settle time itself is reported, not a target.
		minSettled  = 5 * time.Second
		minOnLow    = 0.7
		maxFreeze   = 3 * time.Second  // target 1 s
		maxClimb    = 60 * time.Second // target 20 s
		startBound  = 10 * time.Second
		overallTime = 2 * time.Minute
	)
	rig := startQualityRig(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), overallTime)
	defer cancel()
	pub := rig.publish(ctx, t, "cap")
	v := rig.view(ctx, t, "cap")

	// A new subscriber's estimate starts at 3 Mbit/s, so it starts on
	// the top layer.
	joined := time.Now()
	top, err := waitPacket(ctx, v, joined, startBound, func(p vnettest.Packet) bool { return p.Layer == 2 })
	if err != nil {
		t.Fatalf("the subscriber never received the top layer: %v; layers %s", err, layerHistory(v.Packets(), joined))
	}
	t.Logf("first packet of the top layer %v after joining", top.At.Sub(joined).Round(time.Millisecond))

	capAt := time.Now()
	rig.nw.SetRate(capRate)
	time.Sleep(capWindow)
	capEnd := time.Now()
	pkts := v.Packets()
	t.Logf("under the cap: %s", layerHistory(pkts, capAt))
	// Settled: on the low layer for most of the last minSettled. A probe
	// (padding to see whether the link takes more) can be confirmed on a
	// path that queued it, moving the subscriber up for about a second
	// before congestion revokes it; that excursion is allowed, freezes
	// are not.
	tail := capEnd.Add(-minSettled)
	if frac := timeOnLayer(pkts, tail, capEnd, 0); frac < minOnLow {
		t.Fatalf("the subscriber was on the low layer for %.0f %% of the last %v of %v under a %d bit/s cap (want %.0f %%): %s",
			100*frac, minSettled, capWindow, capRate, 100*minOnLow, layerHistory(pkts, capAt))
	}
	settled, ok := settledOn(pkts, capAt, capEnd, 0)
	if !ok || settled.After(tail) {
		settled = tail
	}
	before, beforeAt := longestFreeze(pkts, capAt, settled)
	freeze, freezeAt := longestFreeze(pkts, settled, capEnd)
	rate := receivedRate(pkts, settled, capEnd)
	t.Logf("cap %d bit/s: on layer 0 for good %v after the cap (longest freeze before that %v, at +%v); then for %v: longest freeze %v (at +%v), %.0f bit/s of payload received",
		capRate, settled.Sub(capAt).Round(time.Millisecond), before.Round(time.Millisecond), beforeAt.Sub(capAt).Round(time.Millisecond),
		capEnd.Sub(settled).Round(time.Millisecond), freeze.Round(time.Millisecond), freezeAt.Sub(capAt).Round(time.Millisecond), rate)
	if freeze > maxFreeze {
		t.Errorf("a freeze of %v on the low layer under the cap (target 1 s, bound %v)", freeze, maxFreeze)
	}

	liftAt := time.Now()
	rig.nw.SetRate(0)
	up, err := waitPacket(ctx, v, liftAt, maxClimb, func(p vnettest.Packet) bool { return p.Layer == 2 })
	pkts = v.Packets()
	t.Logf("after the cap: %s", layerHistory(pkts, liftAt))
	if err != nil {
		t.Fatalf("the subscriber did not climb back to the top layer within %v of lifting the cap: %v", maxClimb, err)
	}
	climb := up.At.Sub(liftAt)
	freeze, _ = longestFreeze(pkts, liftAt, up.At)
	t.Logf("cap lifted: top layer after %v (target 20 s); longest freeze while climbing %v", climb.Round(time.Millisecond), freeze.Round(time.Millisecond))
	for i := range vnettest.SimulcastLayers {
		t.Logf("publisher layer %d: %+v", i, pub.Stats(i))
	}
}

// TestQualityLoss: 5 % of the packets towards the subscriber are lost;
// NACKs and RTX repair all but a few of them.
func TestQualityLoss(t *testing.T) {
	const (
		loss       = 0.05
		window     = 10 * time.Second
		minShare   = 0.995
		startBound = 10 * time.Second
	)
	rig := startQualityRig(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub := rig.publish(ctx, t, "loss")
	v := rig.view(ctx, t, "loss")
	joined := time.Now()
	first, err := waitPacket(ctx, v, joined, startBound, func(p vnettest.Packet) bool { return p.Layer == 2 })
	if err != nil {
		t.Fatalf("the subscriber never received the top layer: %v; layers %s", err, layerHistory(v.Packets(), joined))
	}
	const layer = 2
	time.Sleep(time.Second) // under way on the layer

	rig.nw.SetLoss(loss)
	start := time.Now()
	c0 := pub.Stats(layer).Packets
	time.Sleep(window)
	c1 := pub.Stats(layer).Packets
	end := time.Now()
	// The loss goes on while the last packets are repaired: their
	// retransmissions are as likely to be lost.
	time.Sleep(time.Second)
	rig.nw.SetLoss(0)
	pkts := v.Packets()

	var direct, viaRTX, dup, other int
	got := make(map[uint32]bool)
	for _, p := range pkts {
		if p.At.Before(first.At) {
			continue
		}
		if p.Layer != layer {
			if !p.At.Before(start) && p.At.Before(end) {
				other++
			}
			continue
		}
		if p.Counter < c0 || p.Counter >= c1 {
			continue
		}
		if got[p.Counter] {
			dup++
			continue
		}
		got[p.Counter] = true
		if p.RTX {
			viaRTX++
		} else {
			direct++
		}
	}
	sent := int(c1 - c0)
	share := float64(len(got)) / float64(sent)
	t.Logf("%.0f %% loss for %v on layer %d: %d packets published, %d arrived directly (%.1f %% lost), %d more repaired by RTX, %d duplicates, %d never arrived: %.2f %% delivered",
		loss*100, window, layer, sent, direct, 100*(1-float64(direct)/float64(sent)), viaRTX, dup, sent-len(got), 100*share)
	if other > 0 {
		t.Fatalf("the subscriber left layer %d under %.0f %% loss (%d packets of other layers): %s", layer, loss*100, other, layerHistory(pkts, start))
	}
	if viaRTX == 0 {
		t.Errorf("no packet was repaired by RTX")
	}
	if direct+viaRTX != len(got) {
		t.Errorf("direct %d + RTX %d != %d distinct packets", direct, viaRTX, len(got))
	}
	if share < minShare {
		t.Errorf("%.2f %% of the packets delivered after retransmission, want at least %.1f %%", 100*share, 100*minShare)
	}
	freeze, at := longestFreeze(pkts, start, end)
	t.Logf("longest freeze under loss %v (at +%v)", freeze.Round(time.Millisecond), at.Sub(start).Round(time.Millisecond))
}

// TestQualityStall: the publisher stops sending its top layer while a
// subscriber watches it; the subscriber moves to the middle layer and
// goes on receiving.
func TestQualityStall(t *testing.T) {
	const (
		maxMove    = 6 * time.Second // target 2 s
		after      = 3 * time.Second
		startBound = 10 * time.Second
	)
	rig := startQualityRig(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub := rig.publish(ctx, t, "stall")
	v := rig.view(ctx, t, "stall")
	joined := time.Now()
	if _, err := waitPacket(ctx, v, joined, startBound, func(p vnettest.Packet) bool { return p.Layer == 2 }); err != nil {
		t.Fatalf("the subscriber never received the top layer: %v; layers %s", err, layerHistory(v.Packets(), joined))
	}
	time.Sleep(2 * time.Second)

	stopAt := time.Now()
	pub.SetActive(2, false)
	moved, err := waitPacket(ctx, v, stopAt, maxMove, func(p vnettest.Packet) bool { return p.Layer == 1 })
	if err != nil {
		t.Fatalf("the subscriber did not move to layer 1 within %v of the top layer stopping: %v; layers %s",
			maxMove, err, layerHistory(v.Packets(), stopAt))
	}
	time.Sleep(after)
	end := time.Now()
	pkts := v.Packets()
	t.Logf("after the top layer stopped: %s", layerHistory(pkts, stopAt))
	var frames, others int
	for _, p := range pkts {
		if p.At.Before(moved.At) {
			continue
		}
		if p.Layer != 1 {
			others++
		} else if p.Marker {
			frames++
		}
	}
	gap, _ := longestFreeze(pkts, stopAt, moved.At)
	freeze, _ := longestFreeze(pkts, moved.At, end)
	t.Logf("top layer stopped: on layer 1 after %v (target 2 s; first packet a keyframe: %v); picture frozen %v across the switch; then %d frames in %v, longest freeze %v",
		moved.At.Sub(stopAt).Round(time.Millisecond), moved.Keyframe, gap.Round(time.Millisecond), frames, end.Sub(moved.At).Round(time.Millisecond), freeze.Round(time.Millisecond))
	if !moved.Keyframe {
		t.Errorf("the first packet of layer 1 does not start a keyframe")
	}
	if others > 0 {
		t.Errorf("%d packets of other layers after the move to layer 1", others)
	}
	if want := int(after.Seconds() * vnettest.FPS / 2); frames < want {
		t.Errorf("%d frames of layer 1 in %v after the move, want at least %d", frames, after, want)
	}
	if freeze > time.Second {
		t.Errorf("a freeze of %v on layer 1 after the move", freeze)
	}
	t.Logf("publisher layer 1: %+v", pub.Stats(1))
}

// waitPacket waits up to bound for a packet received at or after since
// that satisfies ok, and returns the first.
func waitPacket(ctx context.Context, v *vnettest.Viewer, since time.Time, bound time.Duration, ok func(vnettest.Packet) bool) (vnettest.Packet, error) {
	deadline := since.Add(bound)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seen := 0
	for {
		pkts := v.Packets()
		for _, p := range pkts[seen:] {
			if !p.At.Before(since) && ok(p) {
				return p, nil
			}
		}
		seen = len(pkts)
		if time.Now().After(deadline) {
			return vnettest.Packet{}, fmt.Errorf("none within %v (%d packets received)", bound, len(pkts))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return vnettest.Packet{}, ctx.Err()
		}
	}
}

// timeOnLayer is the fraction of [from, end) during which layer was the
// one forwarded: the layer of the latest media packet (retransmissions
// aside).
func timeOnLayer(pkts []vnettest.Packet, from, end time.Time, layer int) float64 {
	var on time.Duration
	cur, since := -1, from
	for _, p := range pkts {
		if p.RTX || !p.At.Before(end) {
			continue
		}
		if p.At.Before(from) {
			cur = p.Layer
			continue
		}
		if cur == layer {
			on += p.At.Sub(since)
		}
		cur, since = p.Layer, p.At
	}
	if cur == layer {
		on += end.Sub(since)
	}
	return float64(on) / float64(end.Sub(from))
}

// settledOn returns the arrival of the packet of layer from which on
// every packet up to end is of that layer, if the last packet before end
// is.
func settledOn(pkts []vnettest.Packet, from, end time.Time, layer int) (time.Time, bool) {
	var at time.Time
	for _, p := range pkts {
		// A retransmission repairs a packet sent earlier, perhaps from
		// the layer forwarded before a switch: it says nothing of the
		// layer forwarded now.
		if p.RTX || p.At.Before(from) || !p.At.Before(end) {
			continue
		}
		switch {
		case p.Layer != layer:
			at = time.Time{}
		case at.IsZero():
			at = p.At
		}
	}
	return at, !at.IsZero()
}

// longestFreeze returns the longest time between from, the completions
// of frames (the arrival of a frame's last packet), and end: how long
// the picture stood still. at is when that freeze began.
func longestFreeze(pkts []vnettest.Packet, from, end time.Time) (longest time.Duration, at time.Time) {
	last := from
	for _, p := range pkts {
		if !p.Marker || p.At.Before(from) || !p.At.Before(end) {
			continue
		}
		if d := p.At.Sub(last); d > longest {
			longest, at = d, last
		}
		last = p.At
	}
	if d := end.Sub(last); d > longest {
		longest, at = d, last
	}
	return longest, at
}

// receivedRate is the payload bit rate that arrived between from and
// end.
func receivedRate(pkts []vnettest.Packet, from, end time.Time) float64 {
	var bits float64
	for _, p := range pkts {
		if !p.At.Before(from) && p.At.Before(end) {
			bits += float64(p.Size) * 8
		}
	}
	if d := end.Sub(from).Seconds(); d > 0 {
		return bits / d
	}
	return 0
}

// layerHistory describes which layers arrived when, from since: one
// entry per run of packets of one layer, with its start, its length and
// the RTX packets in it.
func layerHistory(pkts []vnettest.Packet, since time.Time) string {
	var b strings.Builder
	cur, n, rtx := -2, 0, 0
	var start time.Time
	flush := func() {
		if n > 0 {
			fmt.Fprintf(&b, "[+%.2fs L%d x%d rtx %d] ", start.Sub(since).Seconds(), cur, n, rtx)
		}
	}
	for _, p := range pkts {
		if p.At.Before(since) {
			continue
		}
		if p.Layer != cur {
			flush()
			cur, n, rtx, start = p.Layer, 0, 0, p.At
		}
		n++
		if p.RTX {
			rtx++
		}
	}
	flush()
	if b.Len() == 0 {
		return "nothing"
	}
	return strings.TrimSpace(b.String())
}
