package matrix

import (
	"context"
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// callInvite is the content of an m.call.invite from alice's device.
func callInvite(callID string, seq int) map[string]any {
	return map[string]any{
		"call_id": callID, "conf_id": "conf1", "party_id": "ALICEDEV", "device_id": "ALICEDEV",
		"sender_session_id": "s1", "dest_session_id": "", "version": "1", "lifetime": 60000, "seq": seq,
		"offer": map[string]any{"type": "offer", "sdp": "v=0"},
	}
}

func toDeviceEvent(typ string, sender id.UserID, content map[string]any) map[string]any {
	return map[string]any{"type": typ, "sender": sender, "content": content}
}

func todeviceLine(typ string, sender id.UserID, content map[string]any) string {
	return "todevice " + typ + " " + string(sender) + " " + string(mustJSON(content))
}

func TestSyncLogsInAndDeliversToDevice(t *testing.T) {
	hs := newFakeHS(t)
	dir := t.TempDir()
	r := startTransport(t, testConfig(hs.srv.URL, dir))
	r.waitReady(t)

	invite := callInvite("c1", 0)
	hs.push(syncItem{toDevice: []map[string]any{toDeviceEvent("m.call.invite", testAlice, invite)}})
	want := todeviceLine("m.call.invite", testAlice, invite)
	r.in.waitFor(t, want)

	logins, _, _, _, _ := hs.snapshot()
	if len(logins) != 1 {
		t.Fatalf("%d logins, want 1", len(logins))
	}
	wantLogin := map[string]any{
		"type":                        "m.login.application_service",
		"identifier":                  map[string]any{"type": "m.id.user", "user": "focus"},
		"device_id":                   string(testDevice),
		"initial_device_display_name": "focus SFU",
	}
	if !reflect.DeepEqual(logins[0], wantLogin) {
		t.Errorf("login body = %v\nwant %v", logins[0], wantLogin)
	}
	hs.mu.Lock()
	reg := hs.registered
	hs.mu.Unlock()
	wantReg := map[string]any{"type": "m.login.application_service", "username": "focus", "inhibit_login": true}
	if !reflect.DeepEqual(reg, wantReg) {
		t.Errorf("register body = %v\nwant %v", reg, wantReg)
	}

	// The same message through a transaction (a homeserver that pushes
	// to-device messages too) is not delivered again; a new one is.
	second := callInvite("c1", 1)
	code, body := r.putTxn(t, "t1", map[string]any{"events": []any{}, "de.sorunome.msc2409.to_device": []any{
		map[string]any{"type": "m.call.invite", "sender": testAlice, "to_user_id": testBot, "to_device_id": testDevice, "content": invite},
		map[string]any{"type": "m.call.invite", "sender": testAlice, "to_user_id": testBot, "to_device_id": testDevice, "content": second},
	}})
	if code != 200 || body != "{}" {
		t.Fatalf("transaction = %d %s", code, body)
	}
	got := r.in.waitFor(t, todeviceLine("m.call.invite", testAlice, second))
	if n := count(got, want); n != 1 {
		t.Errorf("first invite delivered %d times, want once:\n%s", n, strings.Join(got, "\n"))
	}
	// And /sync bringing the second one again does not deliver it again.
	hs.push(syncItem{toDevice: []map[string]any{toDeviceEvent("m.call.invite", testAlice, second)}})
	waitSince(t, hs, "2")
	if n := count(r.in.list(), todeviceLine("m.call.invite", testAlice, second)); n != 1 {
		t.Errorf("second invite delivered %d times, want once", n)
	}

	// The token is saved: a restarted Transport resumes from it, with the
	// saved device token (no new login), and gets nothing twice.
	r.stop(t)
	_, sinces, _, _, _ := hs.snapshot()
	last := sinces[len(sinces)-1]
	r2 := startTransport(t, testConfig(hs.srv.URL, dir))
	r2.waitReady(t)
	third := callInvite("c1", 2)
	hs.push(syncItem{toDevice: []map[string]any{toDeviceEvent("m.call.invite", testAlice, third)}})
	got = r2.in.waitFor(t, todeviceLine("m.call.invite", testAlice, third))
	if len(got) != 1 {
		t.Errorf("after restart got %v, want only the new invite", got)
	}
	logins, sinces, _, _, _ = hs.snapshot()
	if len(logins) != 1 {
		t.Errorf("%d logins after restart, want the saved device token reused", len(logins))
	}
	if !contains(sinces, last) || contains(sinces[len(sinces)-3:], "") {
		t.Errorf("sinces %v: the restart did not resume from %q", sinces, last)
	}
}

// waitSince waits until the fake homeserver has seen a /sync from since.
func waitSince(t *testing.T, hs *fakeHS, since string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, sinces, _, _, _ := hs.snapshot()
		if contains(sinces, since) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no /sync since %q", since)
}

func TestSyncLogsInAgainWhenTokenRevoked(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	waitSince(t, hs, "0")
	hs.revokeTokens()
	// The /sync in flight was let in before; the next one is refused.
	hs.push(syncItem{toDevice: []map[string]any{toDeviceEvent("m.call.hangup", testAlice, map[string]any{"call_id": "c", "seq": 3})}})
	r.in.waitFor(t, todeviceLine("m.call.hangup", testAlice, map[string]any{"call_id": "c", "seq": 3}))
	hs.push(syncItem{toDevice: []map[string]any{toDeviceEvent("m.call.hangup", testAlice, map[string]any{"call_id": "c", "seq": 4})}})
	r.in.waitFor(t, todeviceLine("m.call.hangup", testAlice, map[string]any{"call_id": "c", "seq": 4}))
	logins, _, _, _, _ := hs.snapshot()
	if len(logins) != 2 {
		t.Errorf("%d logins, want a second one after the token was revoked", len(logins))
	}
	if !strings.Contains(r.logs.String(), "logging in again") {
		t.Errorf("no log line about logging in again:\n%s", r.logs)
	}
}

func TestUnreachableHomeserverIsLoggedAndRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	r := startTransport(t, testConfig(url, t.TempDir()))
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(r.logs.String(), "unreachable") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := r.logs.String()
	if strings.Count(logs, "unreachable") < 2 {
		t.Fatalf("want repeated 'unreachable' errors; log:\n%s", logs)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(logs, "\n", 3)[1]), &line); err != nil {
		t.Fatal(err)
	}
	if line["homeserver"] != url || line["level"] != "error" || line["retry_in"] == nil ||
		!strings.Contains(line["message"].(string), "check matrix.homeserver_url") {
		t.Errorf("log line %v: want the homeserver URL, the error, a retry delay and a hint", line)
	}
}

func TestWrongASTokenIsExplained(t *testing.T) {
	hs := newFakeHS(t)
	cfg := testConfig(hs.srv.URL, t.TempDir())
	cfg.ASToken = "not-the-token"
	r := startTransport(t, cfg)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.logs.String(), "M_UNKNOWN_TOKEN") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(r.logs.String(), "does not accept the as_token") {
		t.Errorf("no hint about the as_token in:\n%s", r.logs)
	}
}

func TestSyncRoomEventsAndInvites(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	// An invite seen only on /sync (stripped state, no event ID).
	hs.push(syncItem{invite: map[id.RoomID][]map[string]any{testRoom: {
		{"type": "m.room.member", "state_key": testBot, "sender": testAlice, "content": map[string]any{"membership": "invite"}},
	}}})
	r.in.waitFor(t, "room "+string(testRoom)+" m.room.member "+string(testBot)+" $botjoin"+string(testRoom))
	// A call membership in the timeline; /sync leaves room_id out.
	key := "_@alice:hs.test_ALICEDEV_m.call"
	hs.push(syncItem{join: map[id.RoomID][]map[string]any{testRoom: {
		{"type": "org.matrix.msc3401.call.member", "state_key": key, "sender": testAlice, "event_id": "$cm1",
			"origin_server_ts": 2000, "content": map[string]any{"call_id": "", "device_id": "ALICEDEV"}},
		{"type": "m.room.message", "sender": testAlice, "event_id": "$msg", "content": map[string]any{"body": "hi"}},
	}}})
	r.in.waitFor(t, "room "+string(testRoom)+" org.matrix.msc3401.call.member "+key+" $cm1")
	// The bot is kicked.
	hs.push(syncItem{leave: map[id.RoomID][]map[string]any{testRoom: {
		{"type": "m.room.member", "state_key": testBot, "sender": testAlice, "event_id": "$kick",
			"origin_server_ts": 3000, "content": map[string]any{"membership": "leave"}},
	}}})
	got := r.in.waitFor(t, "left "+string(testRoom))
	if !contains(got, "room "+string(testRoom)+" m.room.member "+string(testBot)+" $kick") {
		t.Errorf("the kick was not delivered before RoomLeft:\n%s", strings.Join(got, "\n"))
	}
	for _, l := range got {
		if strings.Contains(l, "$msg") || strings.HasPrefix(l, "BAD") {
			t.Errorf("unexpected delivery %q", l)
		}
	}
	_, _, joins, _, _ := hs.snapshot()
	if !reflect.DeepEqual(joins, []id.RoomID{testRoom}) {
		t.Errorf("joins = %v", joins)
	}
}

func TestParseSyncSkipsBadEvents(t *testing.T) {
	body := `{"next_batch":"5","to_device":{"events":[{"type":"m.call.invite","sender":"@a:b","content":{"call_id":"c","seq":0}},
		{"type":5},"junk",{"sender":"@a:b","content":{}}]},
		"rooms":{"join":{"!r:b":{"timeline":{"events":[{"type":"m.room.member","state_key":"@a:b","sender":"@a:b","event_id":"$1","content":{"membership":"join"}},{}]},
		"state":{"events":[{"type":"m.room.member","state_key":"@c:b","sender":"@c:b","event_id":"$2","content":{"membership":"join"}}]}}}},
		"device_one_time_keys_count":{"signed_curve25519":"many"}}`
	s, err := parseSync([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if s.NextBatch != "5" || len(s.ToDevice) != 1 || len(s.Join["!r:b"].Timeline) != 1 || len(s.Join["!r:b"].State) != 1 {
		t.Fatalf("parsed %+v", s)
	}
	if s.Join["!r:b"].Timeline[0].RoomID != "!r:b" || s.Join["!r:b"].State[0].RoomID != "!r:b" {
		t.Error("room ID not filled in")
	}
	if len(s.skipped) != 5 || s.OTKCounts != nil {
		t.Errorf("skipped %v, otk %v; want 4 events and the OTK section", s.skipped, s.OTKCounts)
	}
	if _, err := parseSync([]byte(`[]`)); err == nil {
		t.Error("a list parsed as a /sync response")
	}
}

func TestToDeviceKey(t *testing.T) {
	mk := func(sender id.UserID, typ, content string) *event.Event {
		evt := &event.Event{Sender: sender, Type: event.Type{Type: typ, Class: event.ToDeviceEventType}}
		if err := json.Unmarshal([]byte(content), &evt.Content); err != nil {
			t.Fatal(err)
		}
		return evt
	}
	same := []struct{ a, b *event.Event }{
		{mk("@a:b", "m.call.invite", `{"call_id":"c","seq":1,"device_id":"D","offer":{"sdp":"x"}}`),
			mk("@a:b", "m.call.invite", `{"seq":1,"device_id":"D","call_id":"c","offer":{"sdp":"y"}}`)},
		{mk("@a:b", "m.room.encrypted", `{"algorithm":"a","ciphertext":{"k":{"body":"b","type":0}}}`),
			mk("@a:b", "m.room.encrypted", `{"ciphertext":{"k":{"type":0,"body":"b"}},"algorithm":"a"}`)},
		{mk("@a:b", "m.call.hangup", `{"call_id":"c","seq":2,"party_id":"D"}`),
			mk("@a:b", "m.call.hangup", `{"call_id":"c","seq":2,"device_id":"D"}`)},
	}
	for i, p := range same {
		if toDeviceKey(p.a) != toDeviceKey(p.b) {
			t.Errorf("pair %d: keys differ", i)
		}
	}
	differ := []struct{ a, b *event.Event }{
		{mk("@a:b", "m.call.invite", `{"call_id":"c","seq":1,"device_id":"D"}`), mk("@a:b", "m.call.invite", `{"call_id":"c","seq":2,"device_id":"D"}`)},
		{mk("@a:b", "m.call.invite", `{"call_id":"c","seq":1,"device_id":"D"}`), mk("@a:b", "m.call.invite", `{"call_id":"c","seq":1,"device_id":"E"}`)},
		{mk("@a:b", "m.call.invite", `{"call_id":"c","seq":1,"device_id":"D"}`), mk("@x:b", "m.call.invite", `{"call_id":"c","seq":1,"device_id":"D"}`)},
		{mk("@a:b", "m.call.invite", `{"call_id":"c","seq":1,"device_id":"D"}`), mk("@a:b", "m.call.invite", `{"call_id":"d","seq":1,"device_id":"D"}`)},
		{mk("@a:b", "x.custom", `{"a":1}`), mk("@a:b", "x.custom", `{"a":2}`)},
		{mk("@a:b", "x.custom", `{"a":1}`), mk("@a:b", "x.other", `{"a":1}`)},
	}
	for i, p := range differ {
		if toDeviceKey(p.a) == toDeviceKey(p.b) {
			t.Errorf("pair %d: keys equal", i)
		}
	}
}

// FuzzParseSync feeds arbitrary bodies to the /sync parser: no panic, and
// every event it returns has a type and (but in invites) a sender.
func FuzzParseSync(f *testing.F) {
	f.Add([]byte(`{"next_batch":"1","to_device":{"events":[{"type":"m.call.invite","sender":"@a:b","content":{"call_id":"c","seq":0}}]}}`))
	f.Add([]byte(`{"next_batch":"2","rooms":{"join":{"!r:b":{"timeline":{"events":[{"type":"m.room.member","state_key":"@a:b","sender":"@a:b","content":{"membership":"join"}}]}}},"invite":{"!s:b":{"invite_state":{"events":[{"type":"m.room.member","state_key":"@f:b","sender":"@a:b","content":{"membership":"invite"}}]}}}}}`))
	f.Add([]byte(`{"rooms":{"leave":{"!r:b":{"timeline":{"events":[{}]}}}},"device_lists":{"changed":["@a:b"]}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parseSync(body)
		if err != nil {
			return
		}
		check := func(evts []*event.Event) {
			for _, e := range evts {
				if e == nil || e.Type.Type == "" || e.Sender == "" {
					t.Fatalf("event without type or sender: %+v", e)
				}
			}
		}
		check(s.ToDevice)
		for _, r := range s.Join {
			check(r.State)
			check(r.Timeline)
		}
		for _, r := range s.Leave {
			check(r.Timeline)
		}
	})
}

func TestSendToDeviceUsesTheDeviceToken(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	content := map[string]any{"call_id": "c1", "seq": 0, "answer": map[string]any{"type": "answer", "sdp": "v=0"}}
	typ := event.Type{Type: "m.call.answer", Class: event.ToDeviceEventType}
	if err := r.t.SendToDevice(ctx, testAlice, "ALICEDEV", typ, content); err != nil {
		t.Fatal(err)
	}
	if err := r.t.SendToDevice(ctx, testAlice, "ALICEDEV", typ, json.RawMessage(`{"call_id":"c1","seq":1}`)); err != nil {
		t.Fatal(err)
	}
	_, _, _, _, sent := hs.snapshot()
	if len(sent) != 2 {
		t.Fatalf("sent %d messages", len(sent))
	}
	if !strings.HasPrefix(sent[0].token, "device-token-") || sent[0].typ != "m.call.answer" || sent[0].txn == sent[1].txn {
		t.Errorf("sent %+v: want the device token, the type in the path and distinct txn IDs", sent)
	}
	want := map[string]any{"messages": map[string]any{string(testAlice): map[string]any{"ALICEDEV": map[string]any{
		"call_id": "c1", "seq": float64(0), "answer": map[string]any{"type": "answer", "sdp": "v=0"}}}}}
	if !reflect.DeepEqual(sent[0].body, want) {
		t.Errorf("body = %v\nwant %v", sent[0].body, want)
	}
}

func TestSendToDeviceWaitsForLogin(t *testing.T) {
	tr, err := NewTransport(testConfig("http://127.0.0.1:1", t.TempDir()), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = tr.SendToDevice(ctx, testAlice, "D", event.Type{Type: "m.call.hangup"}, map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "not logged in yet") {
		t.Errorf("SendToDevice before login = %v", err)
	}
}
