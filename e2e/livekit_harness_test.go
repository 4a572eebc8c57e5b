package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/focustest"
)

// The LiveKit tests run the focus with its Element Call front-end
// (livekit/) and drive it with LiveKit's own clients: the Go SDK
// (server-sdk-go) here, livekit-client in Chromium (internal/lkbrowser).
// The Go clients publish the synthetic payloads of internal/testclient, so
// a receiver can tell which publisher, which simulcast layer and which
// packet of it arrived, and whether it arrived intact. Bounds are several
// times what a healthy run takes.

const (
	lkAPIKey    = "focus-e2e"
	lkAPISecret = "e2e-secret-0123456789abcdef0123456789abcdef"
	lkWait      = 30 * time.Second
)

// lkEnv is a focus with LiveKit enabled.
type lkEnv struct {
	focus *focustest.Focus
	// wsURL is the LiveKit URL of the focus, ws://127.0.0.1:PORT.
	wsURL string
}

// startLiveKit runs a focus with the LiveKit front-end on, its API key and
// secret set to lkAPIKey and lkAPISecret and everyone allowed to create
// rooms; mod, if not nil, changes the
// livekit section further.
func startLiveKit(t *testing.T, mod func(*config.LiveKit)) *lkEnv {
	t.Helper()
	return startLiveKitConfig(t, func(c *config.Config) {
		if mod != nil {
			mod(&c.LiveKit)
		}
	})
}

// startLiveKitConfig is startLiveKit with mod changing the whole
// configuration.
func startLiveKitConfig(t *testing.T, mod func(*config.Config)) *lkEnv {
	t.Helper()
	f := focustest.Start(t, func(c *config.Config) {
		c.LiveKit.Enabled = true
		c.LiveKit.APIKey = lkAPIKey
		c.LiveKit.APISecret = lkAPISecret
		c.LiveKit.FullAccessHomeservers = []string{"*"}
		if mod != nil {
			mod(c)
		}
	})
	return &lkEnv{focus: f, wsURL: "ws" + strings.TrimPrefix(f.URL, "http")}
}

// lkToken mints a join token for identity in room with the test's API key,
// as a LiveKit deployment's token service would.
func lkToken(t *testing.T, identity, room string, valid time.Duration) string {
	t.Helper()
	yes := true
	at := auth.NewAccessToken(lkAPIKey, lkAPISecret).
		SetIdentity(identity).
		SetName(identity).
		SetValidFor(valid).
		SetVideoGrant(&auth.VideoGrant{
			RoomJoin: true, RoomCreate: true, Room: room,
			CanPublish: &yes, CanSubscribe: &yes, CanPublishData: &yes,
		})
	jwt, err := at.ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return jwt
}

// lkFlow is one track expected to flow from one peer to another.
type lkFlow struct {
	to, from *lkPeer
	kind     webrtc.RTPCodecType
}

func (f lkFlow) String() string {
	return fmt.Sprintf("%s receives %s's %s", f.to.name, f.from.name, f.kind)
}

// allFlows is every track of every peer to every other peer.
func allFlows(peers ...*lkPeer) []lkFlow {
	var fs []lkFlow
	for _, to := range peers {
		for _, from := range peers {
			if to == from {
				continue
			}
			for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
				if _, ok := from.senders[kind]; ok {
					fs = append(fs, lkFlow{to: to, from: from, kind: kind})
				}
			}
		}
	}
	return fs
}

// without drops the flows for which drop is true.
func without(fs []lkFlow, drop func(lkFlow) bool) []lkFlow {
	return slices.DeleteFunc(slices.Clone(fs), drop)
}

// lkMore is how many more packets waitFlowing wants of each flow: a second
// of audio, and of the slowest video layer.
const lkMore = 15

// waitFlowing waits until every flow has gained more packets than it had
// when called: media keeps arriving.
func waitFlowing(ctx context.Context, t *testing.T, what string, fs []lkFlow, more int) {
	t.Helper()
	base := make([]int, len(fs))
	for i, f := range fs {
		base[i] = f.to.packets(f.from, f.kind)
	}
	ctx, cancel := context.WithTimeout(ctx, lkWait)
	defer cancel()
	err := poll(ctx, func() bool {
		for i, f := range fs {
			if f.to.packets(f.from, f.kind) < base[i]+more {
				return false
			}
		}
		return true
	})
	if err != nil {
		var stuck []string
		for i, f := range fs {
			if n := f.to.packets(f.from, f.kind); n < base[i]+more {
				stuck = append(stuck, fmt.Sprintf("%s: %d then %d packets", f, base[i], n))
			}
		}
		t.Fatalf("%s: media stopped (wanted %d more packets each within %v):\n  %s", what, more, lkWait, strings.Join(stuck, "\n  "))
	}
}

// waitStopped checks that a flow stops: after settle, no packet arrives
// for a window.
func waitStopped(t *testing.T, what string, f lkFlow, settle, window time.Duration) {
	t.Helper()
	time.Sleep(settle)
	before := f.to.packets(f.from, f.kind)
	time.Sleep(window)
	if after := f.to.packets(f.from, f.kind); after != before {
		t.Errorf("%s: %s still flows: %d then %d packets over %v", what, f, before, after, window)
	}
}

// waitCond polls cond for up to lkWait and ends the test with what if it
// never holds.
func waitCond(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !tryCond(ctx, t, what, cond) {
		t.FailNow()
	}
}

// tryCond polls cond for up to lkWait; if it never holds, it fails the test
// with what but lets it go on, and returns false.
func tryCond(ctx context.Context, t *testing.T, what string, cond func() bool) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, lkWait)
	defer cancel()
	if err := poll(ctx, cond); err != nil {
		t.Errorf("waited %v for %s", lkWait, what)
		return false
	}
	return true
}

// checkIntact holds every track a peer received to what survives a
// forwarding SFU on loopback: payloads unaltered and valid, no
// duplicates, VP8 starting at a keyframe.
func checkIntact(t *testing.T, peers ...*lkPeer) {
	t.Helper()
	for _, p := range peers {
		p.mu.Lock()
		recv := make([]*lkRecv, 0, len(p.recv))
		for _, r := range p.recv {
			recv = append(recv, r)
		}
		p.mu.Unlock()
		for _, r := range recv {
			p.mu.Lock()
			s := r.rec.Stats()
			p.mu.Unlock()
			name := fmt.Sprintf("%s receives %s's %s %s", p.name, r.from, r.kind, r.sid)
			t.Logf("%s: %d packets, %d sessions, seq %+v", name, s.Packets, s.Sessions, s.Seq)
			if s.Packets == 0 {
				t.Errorf("%s: no packets", name)
				continue
			}
			if s.Corrupt != 0 || s.VP8Errors != 0 {
				t.Errorf("%s: %d of %d payloads altered, %d not VP8", name, s.Corrupt, s.Packets, s.VP8Errors)
			}
			if s.Seq.Duplicates != 0 {
				t.Errorf("%s: %d duplicate packets", name, s.Seq.Duplicates)
			}
			if r.kind == webrtc.RTPCodecTypeVideo && !s.FirstKeyframe {
				t.Errorf("%s: the first packet does not begin a keyframe: %+v", name, s.First[0])
			}
		}
	}
}
