package matrix

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/dendrite"
)

// dendriteFocus is a Transport registered with a real Dendrite, built
// from the config file's matrix section and the registration
// NewRegistration writes, as an operator would.
type dendriteFocus struct {
	hs      *dendrite.Server
	section config.Matrix
	ln      net.Listener
	srv     *http.Server
	t       *Transport
	in      *recorder
	logs    *syncBuffer
	cancel  context.CancelFunc
	done    chan error
}

// startDendriteFocus starts Dendrite with a registration for a focus that
// listens on a free port, and returns the config section for it.
func startDendrite(t *testing.T) (*dendrite.Server, config.Matrix, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	m := config.Default().Matrix
	m.Enabled = true
	m.ServerName = dendrite.ServerName
	m.AppServiceListen = ln.Addr().String()
	m.Registration = filepath.Join(t.TempDir(), "registration.yaml")
	m.DataDir = filepath.Join(t.TempDir(), "focus-data")
	reg, err := NewRegistration(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRegistration(m.Registration, reg, false); err != nil {
		t.Fatal(err)
	}
	hs := dendrite.Start(t, dendrite.Options{AppServiceRegistration: []string{m.Registration}})
	m.HomeserverURL = hs.URL
	return hs, m, ln
}

func runDendriteFocus(t *testing.T, hs *dendrite.Server, m config.Matrix, ln net.Listener) *dendriteFocus {
	t.Helper()
	cfg, err := NewConfig(m)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, time.Second
	logs := &syncBuffer{}
	tr, err := NewTransport(cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	f := &dendriteFocus{hs: hs, section: m, ln: ln, t: tr, in: newRecorder(), logs: logs, done: make(chan error, 1)}
	f.srv = &http.Server{Handler: tr.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go f.srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- tr.Run(ctx, f.in) }()
	t.Cleanup(func() { f.stop(t) })
	select {
	case <-tr.ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("the Transport did not load its rooms; log:\n%s", logs)
	}
	return f
}

func (f *dendriteFocus) stop(t *testing.T) {
	t.Helper()
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.cancel = nil
	f.srv.Close()
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		t.Error("Run did not return")
	}
	f.t.Close()
	if t.Failed() {
		t.Logf("focus log:\n%s", f.logs)
	}
}

// waitLog waits until the focus's log contains s.
func (f *dendriteFocus) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(f.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the focus log:\n%s", s, f.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTransportWithDendrite(t *testing.T) {
	hs, m, ln := startDendrite(t)
	alice := hs.CreateUser(t, "alice")
	room := hs.CreateRoom(t, alice)
	f := runDendriteFocus(t, hs, m, ln)
	bot, dev := f.t.UserID(), f.t.DeviceID()
	if bot != "@focus:localhost" || dev != "FOCUS" {
		t.Fatalf("bot %s %s", bot, dev)
	}

	// Invited, the bot joins and the room's state arrives.
	alice.Invite(t, room, bot)
	got := f.in.waitForPrefix(t, "room "+string(room)+" m.room.member "+string(bot)+" $")
	if !hasPrefix(got, "room "+string(room)+" m.room.member "+string(alice.ID)+" $") {
		t.Fatalf("alice's membership is not in the loaded state:\n%s", strings.Join(got, "\n"))
	}

	// Call membership reaches RoomEvent through Dendrite's transactions.
	key := "_" + string(alice.ID) + "_" + string(alice.DeviceID) + "_m.call"
	cm := alice.SendState(t, room, event.Type{Type: "org.matrix.msc3401.call.member"}, key, map[string]any{
		"application": "m.call", "call_id": "", "scope": "m.room", "device_id": alice.DeviceID,
		"foci_preferred": []any{map[string]any{"type": "org.matrix.msc3898", "user_id": bot, "device_id": dev}},
	})
	cmLine := "room " + string(room) + " org.matrix.msc3401.call.member " + key + " " + string(cm)
	f.in.waitFor(t, cmLine)
	f.waitLog(t, `"message":"matrix: transaction"`)

	// A to-device invite to the bot's device arrives once (Dendrite does
	// not push to-device messages to appservices: this is /sync).
	invite := callInvite("call1", 0)
	invite["device_id"], invite["party_id"] = alice.DeviceID, alice.DeviceID
	sendToDevice(t, alice.Client, "m.call.invite", bot, dev, invite)
	want := todeviceLine("m.call.invite", alice.ID, invite)
	f.in.waitFor(t, want)

	// Both paths carried the membership (transaction and /sync timeline);
	// it was delivered once.
	if n := count(f.in.list(), cmLine); n != 1 {
		t.Errorf("call membership delivered %d times", n)
	}
	if strings.Contains(f.logs.String(), `"level":"error"`) || strings.Contains(f.logs.String(), `"level":"warn"`) {
		t.Errorf("errors or warnings in the focus log:\n%s", f.logs)
	}

	// The focus answers from its own device.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	answer := map[string]any{"call_id": "call1", "seq": 0, "party_id": dev, "device_id": dev}
	if err := f.t.SendToDevice(ctx, alice.ID, alice.DeviceID, event.Type{Type: "m.call.answer"}, answer); err != nil {
		t.Fatal(err)
	}
	evt := receiveToDevice(t, alice.Client, "m.call.answer")
	if evt.Sender != bot || evt.Content.Raw["call_id"] != "call1" {
		t.Errorf("alice got %+v", evt)
	}

	// A transaction with the wrong hs_token is refused.
	code, body := doRequest(t, http.MethodPut, "http://"+ln.Addr().String()+"/_matrix/app/v1/transactions/forged", "not-the-hs-token",
		map[string]any{"events": []any{}})
	if code != 403 || !strings.Contains(body, "M_FORBIDDEN") {
		t.Errorf("forged transaction = %d %s, want 403 M_FORBIDDEN", code, body)
	}

	// Restart: nothing is delivered twice, and a message sent while the
	// focus was down arrives once.
	f.stop(t)
	second := callInvite("call1", 1)
	second["device_id"], second["party_id"] = alice.DeviceID, alice.DeviceID
	sendToDevice(t, alice.Client, "m.call.invite", bot, dev, second)
	ln2, err := net.Listen("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	f2 := runDendriteFocus(t, hs, m, ln2)
	got = f2.in.waitFor(t, todeviceLine("m.call.invite", alice.ID, second))
	time.Sleep(500 * time.Millisecond) // room for a duplicate to show up
	got = f2.in.list()
	if contains(got, want) || count(got, todeviceLine("m.call.invite", alice.ID, second)) != 1 {
		t.Errorf("after restart:\n%s\nwant the second invite once and not the first", strings.Join(got, "\n"))
	}
	if !contains(got, cmLine) {
		t.Errorf("the joined room's state was not loaded at start:\n%s", strings.Join(got, "\n"))
	}

	// Kicked, the bot leaves the room.
	kctx, kcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer kcancel()
	if _, err := alice.Client.KickUser(kctx, room, &mautrix.ReqKickUser{UserID: bot, Reason: "bye"}); err != nil {
		t.Fatal(err)
	}
	f2.in.waitFor(t, "left "+string(room))
}

func TestTransportWithDendriteRejectsForbiddenInviter(t *testing.T) {
	hs, m, ln := startDendrite(t)
	m.AllowedUsers = []string{"@bob:*"}
	alice := hs.CreateUser(t, "alice")
	room := hs.CreateRoom(t, alice)
	f := runDendriteFocus(t, hs, m, ln)
	alice.Invite(t, room, f.t.UserID())
	f.waitLog(t, "rejecting an invite the policy does not allow")
	// Dendrite records the rejection as the bot's leave.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var member event.MemberEventContent
		err := alice.Client.StateEvent(ctx, room, event.StateMember, string(f.t.UserID()), &member)
		if err == nil && member.Membership == event.MembershipLeave {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bot's membership is %q (%v), want leave", member.Membership, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(f.in.list()) != 0 {
		t.Errorf("delivered %v from a refused room", f.in.list())
	}
}

func sendToDevice(t *testing.T, cli *mautrix.Client, typ string, user id.UserID, device id.DeviceID, content map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{user: {device: {Raw: content}}}}
	if _, err := cli.SendToDevice(ctx, event.Type{Type: typ, Class: event.ToDeviceEventType}, req); err != nil {
		t.Fatalf("send %s: %v", typ, err)
	}
}

// receiveToDevice syncs cli until a to-device event of typ arrives.
func receiveToDevice(t *testing.T, cli *mautrix.Client, typ string) *event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since := ""
	for {
		resp, err := cli.SyncRequest(ctx, 1000, since, "", false, event.PresenceOffline)
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		for _, evt := range resp.ToDevice.Events {
			if evt.Type.Type == typ {
				if evt.Content.Raw == nil {
					_ = json.Unmarshal(evt.Content.VeryRaw, &evt.Content.Raw)
				}
				return evt
			}
		}
		since = resp.NextBatch
	}
}
