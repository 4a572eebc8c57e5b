//go:build goolm

package matrix

// The client side of this test is mautrix's own OlmMachine, which links
// an Olm only with the goolm build tag (or cgo and libolm):
//
//	go test -race -tags goolm -run Crypto ./matrix/
//
// test.sh runs it so. The focus's Olm (crypto.go) needs no tag.

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/dendrite"
)

// cryptoFocus is a dendriteFocus whose Transport has an Olm.
type cryptoFocus struct {
	*dendriteFocus
	olm *Olm
}

func runCryptoFocus(t *testing.T, hs *dendrite.Server, m config.Matrix, ln net.Listener) *cryptoFocus {
	t.Helper()
	cfg, err := NewConfig(m)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, time.Second
	logs := &syncBuffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel)
	olm, err := NewOlm(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Crypto = olm
	tr, err := NewTransport(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	olm.Attach(tr)
	f := &cryptoFocus{
		dendriteFocus: &dendriteFocus{hs: hs, section: m, ln: ln, t: tr, in: newRecorder(), logs: logs, done: make(chan error, 1)},
		olm:           olm,
	}
	f.srv = &http.Server{Handler: tr.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go f.srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- tr.Run(ctx, f.in) }()
	t.Cleanup(func() { f.stop(t) })
	f.waitLog(t, "published the bot device's encryption keys")
	return f
}

func (f *cryptoFocus) stop(t *testing.T) {
	t.Helper()
	f.dendriteFocus.stop(t)
	f.olm.Close()
}

// waitToDevice waits up to 30 s for the focus to deliver line.
func (f *cryptoFocus) waitToDevice(t *testing.T, line string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !contains(f.in.list(), line) {
		if time.Now().After(deadline) {
			t.Fatalf("the focus did not deliver\n%s\ngot:\n%s\nlog:\n%s", line, strings.Join(f.in.list(), "\n"), f.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// olmClient is a Matrix client with mautrix's OlmMachine, as a client
// library built on mautrix would have.
type olmClient struct {
	user  *dendrite.User
	mach  *crypto.OlmMachine
	since string
}

func newOlmClient(t *testing.T, user *dendrite.User) *olmClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	mach := crypto.NewOlmMachine(user.Client, &log, crypto.NewMemoryStore(nil), noRooms{})
	if err := mach.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mach.ShareKeys(ctx, 0); err != nil {
		t.Fatalf("client keys: %v", err)
	}
	return &olmClient{user: user, mach: mach}
}

// noRooms is the OlmMachine's view of rooms: none is encrypted. Only
// to-device messages are encrypted here.
type noRooms struct{}

func (noRooms) IsEncrypted(context.Context, id.RoomID) (bool, error) { return false, nil }
func (noRooms) GetEncryptionEvent(context.Context, id.RoomID) (*event.EncryptionEventContent, error) {
	return nil, nil
}
func (noRooms) GetHistoryVisibility(context.Context, id.RoomID) (*event.HistoryVisibilityEventContent, error) {
	return nil, nil
}
func (noRooms) FindSharedRooms(context.Context, id.UserID) ([]id.RoomID, error) { return nil, nil }

// send sends (typ, content) to a device, Olm-encrypted.
func (c *olmClient) send(t *testing.T, to id.UserID, device id.DeviceID, typ string, content map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{to: {device: {Raw: content}}}}
	enc, err := c.mach.EncryptToDevices(ctx, event.Type{Type: typ, Class: event.ToDeviceEventType}, req)
	if err != nil {
		t.Fatalf("encrypt %s: %v", typ, err)
	}
	if enc.Messages[to][device] == nil {
		t.Fatalf("mautrix made no Olm session with %s/%s", to, device)
	}
	if _, err := c.user.Client.SendToDevice(ctx, event.ToDeviceEncrypted, enc); err != nil {
		t.Fatalf("send %s: %v", typ, err)
	}
}

// receive syncs until an encrypted to-device message arrives and returns
// it decrypted; a plaintext m.call.* message fails the test.
func (c *olmClient) receive(t *testing.T) *crypto.DecryptedOlmEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		resp, err := c.user.Client.SyncRequest(ctx, 1000, c.since, "", false, event.PresenceOffline)
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		c.since = resp.NextBatch
		for _, evt := range resp.ToDevice.Events {
			if strings.HasPrefix(evt.Type.Type, "m.call.") {
				t.Fatalf("got %s in plaintext: %s", evt.Type.Type, evt.Content.VeryRaw)
			}
			if evt.Type.Type != event.ToDeviceEncrypted.Type {
				continue
			}
			evt.Type.Class = event.ToDeviceEventType
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				t.Fatalf("encrypted content: %v", err)
			}
			dec := c.mach.HandleEncryptedEvent(ctx, evt)
			if dec == nil {
				t.Fatalf("mautrix cannot decrypt %s", evt.Content.VeryRaw)
			}
			return dec
		}
	}
}

func TestCryptoWithDendrite(t *testing.T) {
	hs, m, ln := startDendrite(t)
	aliceUser := hs.CreateUser(t, "alice")
	f := runCryptoFocus(t, hs, m, ln)
	bot, dev := f.t.UserID(), f.t.DeviceID()
	alice := newOlmClient(t, aliceUser)

	// An Olm-encrypted invite reaches Inbound.ToDevice decrypted.
	invite := callInvite("call1", 0)
	invite["device_id"], invite["party_id"] = aliceUser.DeviceID, aliceUser.DeviceID
	alice.send(t, bot, dev, "m.call.invite", invite)
	f.waitToDevice(t, todeviceLine("m.call.invite", aliceUser.ID, invite))

	// The focus's reply is encrypted, and mautrix decrypts it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	answer := map[string]any{"call_id": "call1", "seq": 0, "party_id": string(dev), "device_id": string(dev)}
	if err := f.t.SendToDevice(ctx, aliceUser.ID, aliceUser.DeviceID, event.Type{Type: "m.call.answer"}, answer); err != nil {
		t.Fatal(err)
	}
	checkReply(t, alice.receive(t), bot, dev, "m.call.answer", answer)

	// Restarted with the same data dir, the focus keeps its identity and
	// its sessions: a message sent while it was down still decrypts, and
	// so does the reply.
	ed, curve := f.olm.IdentityKeys()
	f.stop(t)
	second := callInvite("call1", 1)
	second["device_id"], second["party_id"] = aliceUser.DeviceID, aliceUser.DeviceID
	alice.send(t, bot, dev, "m.call.invite", second)
	ln2, err := net.Listen("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	f2 := runCryptoFocus(t, hs, m, ln2)
	if ed2, curve2 := f2.olm.IdentityKeys(); ed2 != ed || curve2 != curve {
		t.Fatalf("the device's keys changed across the restart: %s %s -> %s %s", ed, curve, ed2, curve2)
	}
	keys, err := aliceUser.Client.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bot: {dev}}})
	if err != nil {
		t.Fatal(err)
	}
	published := keys.DeviceKeys[bot][dev]
	if published.Keys.GetEd25519(dev) != ed || published.Keys.GetCurve25519(dev) != curve {
		t.Errorf("the homeserver publishes %v for the bot device, want %s %s", published.Keys, ed, curve)
	}
	f2.waitToDevice(t, todeviceLine("m.call.invite", aliceUser.ID, second))
	hangup := map[string]any{"call_id": "call1", "seq": 1, "party_id": string(dev), "device_id": string(dev), "reason": "user_hangup"}
	if err := f2.t.SendToDevice(ctx, aliceUser.ID, aliceUser.DeviceID, event.Type{Type: "m.call.hangup"}, hangup); err != nil {
		t.Fatal(err)
	}
	checkReply(t, alice.receive(t), bot, dev, "m.call.hangup", hangup)

	if strings.Contains(f2.logs.String(), `"level":"error"`) || strings.Contains(f2.logs.String(), `"level":"warn"`) {
		t.Errorf("errors or warnings in the focus log:\n%s", f2.logs)
	}
}

func checkReply(t *testing.T, dec *crypto.DecryptedOlmEvent, bot id.UserID, dev id.DeviceID, typ string, want map[string]any) {
	t.Helper()
	if dec.Type.Type != typ || dec.Sender != bot {
		t.Errorf("decrypted %s from %s, want %s from %s", dec.Type.Type, dec.Sender, typ, bot)
	}
	if dec.SenderDevice == nil || dec.SenderDevice.DeviceID != dev {
		t.Errorf("mautrix did not tie the message to the bot device: %+v", dec.SenderDevice)
	}
	var got map[string]any
	if err := json.Unmarshal(dec.Content.VeryRaw, &got); err != nil {
		t.Fatal(err)
	}
	if compactJSON(mustJSON(got)) != compactJSON(mustJSON(want)) {
		t.Errorf("decrypted content %s, want %s", mustJSON(got), mustJSON(want))
	}
}
