package matrix

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// joinedFakeHS is a fake homeserver where the bot is already in testRoom
// with alice.
func joinedFakeHS(t *testing.T) *fakeHS {
	hs := newFakeHS(t)
	hs.joinedRoom[testRoom] = true
	hs.state[testRoom] = []*event.Event{
		memberEvent("$botjoin", testRoom, testBot, testBot, "join", 100),
		memberEvent("$alicejoin", testRoom, testAlice, testAlice, "join", 200),
	}
	return hs
}

func roomLine(room id.RoomID, typ, key, evtID string) string {
	return "room " + string(room) + " " + typ + " " + key + " " + evtID
}

// callMember is an org.matrix.msc3401.call.member event as a transaction
// carries it.
func callMember(evtID string, room id.RoomID, user id.UserID, device string, ts int64) map[string]any {
	return map[string]any{
		"type": "org.matrix.msc3401.call.member", "event_id": evtID, "room_id": room, "sender": user,
		"state_key": "_" + string(user) + "_" + device + "_m.call", "origin_server_ts": ts,
		"content": map[string]any{"call_id": "", "device_id": device, "focus_active": map[string]any{"type": "livekit"}},
	}
}

func TestAppServiceAuth(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	base := r.as.URL
	txn := `{"events":[]}`
	tests := []struct {
		name, method, path, token, query string
		body                             string
		status                           int
		errcode                          string
	}{
		{"transaction", "PUT", "/_matrix/app/v1/transactions/1", testHSToken, "", txn, 200, ""},
		{"transaction missing token", "PUT", "/_matrix/app/v1/transactions/2", "", "", txn, 403, "M_FORBIDDEN"},
		{"transaction wrong token", "PUT", "/_matrix/app/v1/transactions/3", "wrong", "", txn, 403, "M_FORBIDDEN"},
		{"transaction as_token is not hs_token", "PUT", "/_matrix/app/v1/transactions/4", testASToken, "", txn, 403, "M_FORBIDDEN"},
		{"legacy query token", "PUT", "/_matrix/app/v1/transactions/5", "", "access_token=" + testHSToken, txn, 200, ""},
		{"legacy query token wrong", "PUT", "/_matrix/app/v1/transactions/6", "", "access_token=nope", txn, 403, "M_FORBIDDEN"},
		{"legacy path", "PUT", "/transactions/7", testHSToken, "", txn, 200, ""},
		{"legacy path wrong token", "PUT", "/transactions/8", "x", "", txn, 403, "M_FORBIDDEN"},
		{"ping", "POST", "/_matrix/app/v1/ping", testHSToken, "", `{"transaction_id":"p1"}`, 200, ""},
		{"ping empty body", "POST", "/_matrix/app/v1/ping", testHSToken, "", "", 200, ""},
		{"ping bad body", "POST", "/_matrix/app/v1/ping", testHSToken, "", "[", 400, "M_NOT_JSON"},
		{"ping wrong token", "POST", "/_matrix/app/v1/ping", "x", "", "{}", 403, "M_FORBIDDEN"},
		{"user query bot", "GET", "/_matrix/app/v1/users/" + url.PathEscape(string(testBot)), testHSToken, "", "", 200, ""},
		{"user query other", "GET", "/_matrix/app/v1/users/" + url.PathEscape("@focus2:hs.test"), testHSToken, "", "", 404, "M_NOT_FOUND"},
		{"user query legacy", "GET", "/users/" + url.PathEscape(string(testBot)), testHSToken, "", "", 200, ""},
		{"user query no token", "GET", "/_matrix/app/v1/users/" + url.PathEscape(string(testBot)), "", "", "", 403, "M_FORBIDDEN"},
		{"room alias", "GET", "/_matrix/app/v1/rooms/" + url.PathEscape("#a:hs.test"), testHSToken, "", "", 404, "M_NOT_FOUND"},
		{"room alias wrong token", "GET", "/_matrix/app/v1/rooms/" + url.PathEscape("#a:hs.test"), "x", "", "", 403, "M_FORBIDDEN"},
		{"unknown endpoint", "GET", "/_matrix/app/v1/thirdparty/protocol/x", testHSToken, "", "", 404, "M_UNRECOGNIZED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := base + tt.path
			if tt.query != "" {
				u += "?" + tt.query
			}
			var body any
			if tt.body != "" {
				body = tt.body
			}
			code, out := doRequest(t, tt.method, u, tt.token, body)
			if code != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, code, out, tt.status)
			}
			if tt.errcode == "" {
				if out != "{}" {
					t.Errorf("body %q, want {}", out)
				}
				return
			}
			var e struct{ Errcode, Error string }
			if err := json.Unmarshal([]byte(out), &e); err != nil || e.Errcode != tt.errcode || e.Error == "" {
				t.Errorf("body %q, want errcode %s with a message", out, tt.errcode)
			}
		})
	}
	if !strings.Contains(r.logs.String(), "wrong hs_token") || !strings.Contains(r.logs.String(), "missing hs_token") {
		t.Errorf("refusals not logged:\n%s", r.logs)
	}
}

func TestTransactionProcessedOnce(t *testing.T) {
	hs := joinedFakeHS(t)
	dir := t.TempDir()
	r := startTransport(t, testConfig(hs.srv.URL, dir))
	r.waitReady(t)
	line := roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_ALICEDEV_m.call", "$cm1")
	txn := map[string]any{"events": []any{callMember("$cm1", testRoom, testAlice, "ALICEDEV", 1000)}}
	for range 3 {
		if code, body := r.putTxn(t, "42", txn); code != 200 || body != "{}" {
			t.Fatalf("transaction = %d %s", code, body)
		}
	}
	r.in.waitFor(t, line)
	// The same ID with another body (a homeserver bug, or a replay) is
	// still not processed again.
	other := map[string]any{"events": []any{callMember("$cm2", testRoom, testAlice, "ALICEDEV", 1001)}}
	if code, _ := r.putTxn(t, "42", other); code != 200 {
		t.Fatalf("replay = %d", code)
	}
	r.stop(t)
	if got := r.in.list(); count(got, line) != 1 || contains(got, roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_ALICEDEV_m.call", "$cm2")) {
		t.Errorf("deliveries:\n%s\nwant $cm1 once and no $cm2", strings.Join(got, "\n"))
	}

	// After a restart the ID is still known.
	r2 := startTransport(t, testConfig(hs.srv.URL, dir))
	r2.waitReady(t)
	if code, _ := r2.putTxn(t, "42", other); code != 200 {
		t.Fatalf("replay after restart = %d", code)
	}
	if code, _ := r2.putTxn(t, "43", map[string]any{"events": []any{callMember("$cm3", testRoom, testAlice, "ALICEDEV", 1002)}}); code != 200 {
		t.Fatal("new transaction refused")
	}
	got := r2.in.waitFor(t, roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_ALICEDEV_m.call", "$cm3"))
	if contains(got, roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_ALICEDEV_m.call", "$cm2")) {
		t.Errorf("the replayed transaction was processed after the restart:\n%s", strings.Join(got, "\n"))
	}
}

func TestTransactionMalformed(t *testing.T) {
	hs := joinedFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	bad := []struct{ name, body, errcode string }{
		{"not JSON", "{", "M_BAD_JSON"},
		{"a list", "[]", "M_BAD_JSON"},
		{"null", "null", "M_BAD_JSON"},
		{"empty", "", "M_BAD_JSON"},
		{"events not a list", `{"events":{}}`, "M_BAD_JSON"},
		{"to_device not a list", `{"events":[],"to_device":"x"}`, "M_BAD_JSON"},
	}
	for i, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, out := r.putTxn(t, fmt.Sprintf("bad%d", i), tt.body)
			if code != 400 || !strings.Contains(out, tt.errcode) {
				t.Errorf("%s = %d %s, want 400 %s", tt.body, code, out, tt.errcode)
			}
		})
	}
	// A malformed transaction is not recorded: fixed, it is processed.
	good := map[string]any{"events": []any{
		"junk",
		map[string]any{"type": "m.room.member"},
		callMember("$ok", testRoom, testAlice, "ALICEDEV", 1000),
		map[string]any{"type": 7, "sender": testAlice},
	}}
	if code, out := r.putTxn(t, "bad0", good); code != 200 {
		t.Fatalf("transaction with some bad events = %d %s, want 200", code, out)
	}
	r.in.waitFor(t, roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_ALICEDEV_m.call", "$ok"))
	if !strings.Contains(r.logs.String(), "skipping a malformed event") {
		t.Error("skipped events not logged")
	}

	huge := `{"events":[],"x":"` + strings.Repeat("a", maxTransactionSize) + `"}`
	if code, out := r.putTxn(t, "huge", huge); code != 413 || !strings.Contains(out, "M_TOO_LARGE") {
		t.Errorf("huge transaction = %d %.100s, want 413 M_TOO_LARGE", code, out)
	}
	if code, out := r.putTxn(t, "a%0Ab", `{"events":[]}`); code != 400 || !strings.Contains(out, "M_INVALID_PARAM") {
		t.Errorf("transaction ID with a newline = %d %s, want 400", code, out)
	}
}

func TestTransactionOrder(t *testing.T) {
	hs := joinedFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	var want []string
	for i := range 20 {
		evtID := fmt.Sprintf("$m%d", i)
		txn := map[string]any{
			"events": []any{
				callMember(evtID, testRoom, testAlice, "ALICEDEV", int64(1000+i)),
				map[string]any{"type": "m.room.message", "event_id": "$x" + evtID, "room_id": testRoom, "sender": testAlice, "content": map[string]any{}},
			},
			// Room events come before the to-device messages of the same
			// transaction, so a member's invite finds its membership.
			"to_device": []any{toDeviceEvent("m.call.invite", testAlice, callInvite("c", i))},
		}
		if code, _ := r.putTxn(t, fmt.Sprint(i), txn); code != 200 {
			t.Fatal("transaction refused")
		}
		want = append(want,
			roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_ALICEDEV_m.call", evtID),
			todeviceLine("m.call.invite", testAlice, callInvite("c", i)))
	}
	got := r.in.waitFor(t, want...)
	// The first deliveries are the loaded state.
	state := []string{
		roomLine(testRoom, "m.room.member", string(testAlice), "$alicejoin"),
		roomLine(testRoom, "m.room.member", string(testBot), "$botjoin"),
	}
	if strings.Join(got[:2], "\n") != strings.Join(state, "\n") {
		t.Errorf("first deliveries %v, want the room state %v", got[:2], state)
	}
	if strings.Join(got[2:], "\n") != strings.Join(want, "\n") {
		t.Errorf("order:\n%s\nwant\n%s", strings.Join(got[2:], "\n"), strings.Join(want, "\n"))
	}
}

func TestTransactionToDeviceForOtherDevicesIgnored(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	mine := map[string]any{"type": "m.call.invite", "sender": testAlice, "to_user_id": testBot, "to_device_id": testDevice, "content": callInvite("a", 0)}
	otherDevice := map[string]any{"type": "m.call.invite", "sender": testAlice, "to_user_id": testBot, "to_device_id": "OTHER", "content": callInvite("b", 0)}
	otherUser := map[string]any{"type": "m.call.invite", "sender": testAlice, "to_user_id": "@focus2:hs.test", "to_device_id": testDevice, "content": callInvite("c", 0)}
	stable := map[string]any{"type": "m.call.invite", "sender": testAlice, "content": callInvite("d", 0)}
	unstable := map[string]any{"type": "m.call.invite", "sender": testAlice, "content": callInvite("e", 0)}
	// The stable key wins over the unstable one.
	if code, _ := r.putTxn(t, "1", map[string]any{"events": []any{}, "to_device": []any{mine, otherDevice, otherUser, stable}, "de.sorunome.msc2409.to_device": []any{unstable}}); code != 200 {
		t.Fatal("refused")
	}
	if code, _ := r.putTxn(t, "2", map[string]any{"events": []any{}, "de.sorunome.msc2409.to_device": []any{unstable}}); code != 200 {
		t.Fatal("refused")
	}
	got := r.in.waitFor(t,
		todeviceLine("m.call.invite", testAlice, callInvite("a", 0)),
		todeviceLine("m.call.invite", testAlice, callInvite("d", 0)),
		todeviceLine("m.call.invite", testAlice, callInvite("e", 0)))
	if len(got) != 3 {
		t.Errorf("deliveries:\n%s\nwant a, d, e", strings.Join(got, "\n"))
	}
}

func TestEncryptedToDeviceWithoutCryptoIsDropped(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	enc := toDeviceEvent("m.room.encrypted", testAlice, map[string]any{"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": map[string]any{}})
	if code, _ := r.putTxn(t, "1", map[string]any{"events": []any{}, "to_device": []any{enc}}); code != 200 {
		t.Fatal("refused")
	}
	if len(r.in.list()) != 0 || !strings.Contains(r.logs.String(), "no encryption yet") {
		t.Errorf("deliveries %v; log:\n%s", r.in.list(), r.logs)
	}
}

func TestTransactionAfterRunEndsIs503(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	r.cancel()
	<-r.done
	r.done <- nil // for stop
	code, out := r.putTxn(t, "1", `{"events":[]}`)
	if code != http.StatusServiceUnavailable {
		t.Errorf("transaction after Run = %d %s, want 503", code, out)
	}
	r.cancel = func() {}
	r.stop(t)
}

// FuzzParseTransaction feeds arbitrary bodies to the transaction parser:
// no panic, and what it returns is well formed.
func FuzzParseTransaction(f *testing.F) {
	for _, s := range []string{
		`{"events":[]}`,
		`{"events":[{"type":"m.room.member","event_id":"$1","room_id":"!r:b","sender":"@a:b","state_key":"@f:b","content":{"membership":"invite"}}]}`,
		`{"events":[],"to_device":[{"type":"m.call.invite","sender":"@a:b","to_device_id":"D","content":{"call_id":"c","seq":0}}]}`,
		`{"events":[],"de.sorunome.msc2409.to_device":[{"type":"m.call.hangup","sender":"@a:b","content":{}}],"de.sorunome.msc2409.ephemeral":[{"type":"m.typing","content":{}}]}`,
		`{"events":[],"org.matrix.msc3202.device_one_time_keys_count":{"@f:b":{"D":{"signed_curve25519":5}}},"org.matrix.msc3202.device_lists":{"changed":["@a:b"]}}`,
		`{"events":["x",1,null,{}]}`,
		`[]`, `null`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		txn, err := parseTransaction(body)
		if err != nil {
			return
		}
		for _, e := range txn.events {
			if e.Type.Type == "" || e.Sender == "" || e.RoomID == "" ||
				(e.Type.Class != event.StateEventType && e.Type.Class != event.MessageEventType) ||
				(e.StateKey != nil) != (e.Type.Class == event.StateEventType) {
				t.Fatalf("bad room event %+v", e)
			}
		}
		for _, e := range txn.toDevice {
			if e.Type.Type == "" || e.Sender == "" || e.Type.Class != event.ToDeviceEventType {
				t.Fatalf("bad to-device event %+v", e)
			}
			_ = toDeviceKey(e)
		}
	})
}
