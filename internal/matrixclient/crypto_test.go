//go:build goolm

package matrixclient

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/internal/dendrite"
)

// olmPeer is one device with an Olm, against real Dendrite.
type olmPeer struct {
	u     *dendrite.User
	dir   string
	olm   *Olm
	since string
}

func openOlm(ctx context.Context, t *testing.T, hs *dendrite.Server, p *olmPeer) {
	t.Helper()
	o, err := NewOlm(ctx, hs.URL, User{UserID: p.u.ID, AccessToken: p.u.AccessToken, DeviceID: p.u.DeviceID}, p.dir,
		zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	p.olm = o
}

// send encrypts (typ, content) for to and sends it.
func (p *olmPeer) send(ctx context.Context, t *testing.T, to *olmPeer, typ string, content any) {
	t.Helper()
	raw, _ := json.Marshal(content)
	wireType, wire, err := p.olm.EncryptToDevice(ctx, to.u.ID, to.u.DeviceID, event.Type{Type: typ}, raw)
	if err != nil {
		t.Fatalf("%s encrypts %s: %v", p.u.ID, typ, err)
	}
	if wireType.Type != event.ToDeviceEncrypted.Type {
		t.Fatalf("%s: encrypted %s as %s", p.u.ID, typ, wireType.Type)
	}
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{to.u.ID: {to.u.DeviceID: {VeryRaw: wire}}}}
	if _, err := p.u.Client.SendToDevice(ctx, wireType, req); err != nil {
		t.Fatal(err)
	}
}

// next syncs until a to-device event arrives and returns it as received.
func (p *olmPeer) next(ctx context.Context, t *testing.T) *event.Event {
	t.Helper()
	for {
		resp, err := p.u.Client.SyncRequest(ctx, 1000, p.since, "", false, event.PresenceOffline)
		if err != nil {
			t.Fatalf("%s: sync: %v", p.u.ID, err)
		}
		p.since = resp.NextBatch
		if len(resp.ToDevice.Events) > 0 {
			return resp.ToDevice.Events[0]
		}
	}
}

func (p *olmPeer) receive(ctx context.Context, t *testing.T, from *olmPeer, typ string, want any) *event.Event {
	t.Helper()
	evt := p.next(ctx, t)
	if evt.Type.Type != event.ToDeviceEncrypted.Type {
		t.Fatalf("%s got %s, want %s", p.u.ID, evt.Type.Type, event.ToDeviceEncrypted.Type)
	}
	wire := *evt
	wire.Content = event.Content{VeryRaw: append(json.RawMessage(nil), evt.Content.VeryRaw...)}
	dec, err := p.olm.DecryptToDevice(ctx, evt)
	if err != nil {
		t.Fatalf("%s decrypts: %v", p.u.ID, err)
	}
	if dec.Type != typ || dec.SenderDevice != from.u.DeviceID || !jsonEqual(dec.Content, want) {
		t.Errorf("%s decrypted %s from %s: %s; want %s from %s: %v", p.u.ID, dec.Type, dec.SenderDevice, dec.Content, typ, from.u.DeviceID, want)
	}
	return &wire
}

// TestOlm: two devices with an Olm each exchange encrypted to-device
// messages through Dendrite. Reopened on its directory, an Olm is the
// same device and its sessions go on. A replayed or altered message does
// not decrypt.
func TestOlm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hs := dendrite.Start(t, dendrite.Options{})
	alice := &olmPeer{u: hs.CreateUser(t, "alice"), dir: t.TempDir()}
	bob := &olmPeer{u: hs.CreateUser(t, "bob"), dir: t.TempDir()}
	openOlm(ctx, t, hs, alice)
	openOlm(ctx, t, hs, bob)
	t.Cleanup(func() { alice.olm.Close(); bob.olm.Close() })

	invite := map[string]any{"call_id": "c1", "seq": 0}
	alice.send(ctx, t, bob, "m.call.invite", invite)
	first := bob.receive(ctx, t, alice, "m.call.invite", invite)
	answer := map[string]any{"call_id": "c1", "seq": 0, "answer": map[string]any{"type": "answer"}}
	bob.send(ctx, t, alice, "m.call.answer", answer)
	alice.receive(ctx, t, bob, "m.call.answer", answer)

	// The same message again is a replay.
	if _, err := bob.olm.DecryptToDevice(ctx, first); err == nil {
		t.Error("a replayed message decrypted")
	}

	// Alice's device, reopened, has the same keys and sessions: Bob's
	// next message, on the session of the answer, decrypts.
	ed, curve := alice.olm.IdentityKeys()
	alice.olm.Close()
	openOlm(ctx, t, hs, alice)
	if ed2, curve2 := alice.olm.IdentityKeys(); ed2 != ed || curve2 != curve {
		t.Fatalf("reopened, the keys are %s %s, were %s %s", ed2, curve2, ed, curve)
	}
	hangup := map[string]any{"call_id": "c1", "seq": 1, "reason": "user_hangup"}
	bob.send(ctx, t, alice, "m.call.hangup", hangup)
	alice.receive(ctx, t, bob, "m.call.hangup", hangup)
	candidates := map[string]any{"call_id": "c1", "seq": 1, "candidates": []any{}}
	alice.send(ctx, t, bob, "m.call.candidates", candidates)
	last := bob.receive(ctx, t, alice, "m.call.candidates", candidates)

	// A message whose MAC was altered does not decrypt.
	var c event.EncryptedEventContent
	if err := json.Unmarshal(last.Content.VeryRaw, &c); err != nil {
		t.Fatal(err)
	}
	_, bobKey := bob.olm.IdentityKeys()
	ct := c.OlmCiphertext[bobKey]
	body := []byte(ct.Body)
	i := len(body) - 3 // in the MAC
	if body[i] == 'A' {
		body[i] = 'B'
	} else {
		body[i] = 'A'
	}
	ct.Body = string(body)
	c.OlmCiphertext[bobKey] = ct
	raw, _ := json.Marshal(&c)
	last.Content = event.Content{VeryRaw: raw}
	if _, err := bob.olm.DecryptToDevice(ctx, last); err == nil {
		t.Error("an altered message decrypted")
	} else if !strings.Contains(err.Error(), "olm:") {
		t.Errorf("error %q", err)
	}
}
