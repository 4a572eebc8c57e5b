package matrix

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// keyServer is a homeserver's /keys API, enough for Olm between devices
// of its users: upload, query and claim, with fallback keys.
type keyServer struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	tokens   map[string]userDevice
	devices  map[userDevice]json.RawMessage
	otks     map[userDevice]map[string]json.RawMessage
	fallback map[userDevice]*fallbackKey
	queries  map[id.UserID]int
	uploads  int
}

type userDevice struct {
	user   id.UserID
	device id.DeviceID
}

type fallbackKey struct {
	id   string
	raw  json.RawMessage
	used bool
}

func newKeyServer(t testing.TB) *keyServer {
	ks := &keyServer{
		t:        t,
		tokens:   map[string]userDevice{},
		devices:  map[userDevice]json.RawMessage{},
		otks:     map[userDevice]map[string]json.RawMessage{},
		fallback: map[userDevice]*fallbackKey{},
		queries:  map[id.UserID]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_matrix/client/v3/keys/upload", ks.auth(ks.upload))
	mux.HandleFunc("POST /_matrix/client/v3/keys/query", ks.auth(ks.query))
	mux.HandleFunc("POST /_matrix/client/v3/keys/claim", ks.auth(ks.claim))
	ks.srv = httptest.NewServer(mux)
	t.Cleanup(ks.srv.Close)
	return ks
}

func (ks *keyServer) auth(h func(userDevice, []byte) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ks.mu.Lock()
		who, ok := ks.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		ks.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN_TOKEN","error":"who?"}`))
			return
		}
		var body json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		ks.mu.Lock()
		resp := h(who, body)
		ks.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	}
}

// client is a mautrix client of the server for a device.
func (ks *keyServer) client(user id.UserID, device id.DeviceID) *mautrix.Client {
	token := "token-" + string(user) + "-" + string(device)
	ks.mu.Lock()
	ks.tokens[token] = userDevice{user, device}
	ks.mu.Unlock()
	cli, err := mautrix.NewClient(ks.srv.URL, user, token)
	if err != nil {
		ks.t.Fatal(err)
	}
	cli.DeviceID = device
	cli.Client = ks.srv.Client()
	cli.Log = zerolog.Nop()
	return cli
}

func (ks *keyServer) upload(who userDevice, body []byte) any {
	var req struct {
		DeviceKeys   json.RawMessage            `json:"device_keys"`
		OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
		FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		ks.t.Errorf("keys/upload: %v", err)
	}
	ks.uploads++
	if len(req.DeviceKeys) > 0 {
		ks.devices[who] = req.DeviceKeys
	}
	if ks.otks[who] == nil {
		ks.otks[who] = map[string]json.RawMessage{}
	}
	for k, v := range req.OneTimeKeys {
		ks.otks[who][k] = v
	}
	for k, v := range req.FallbackKeys {
		ks.fallback[who] = &fallbackKey{id: k, raw: v}
	}
	return map[string]any{"one_time_key_counts": map[string]int{"signed_curve25519": len(ks.otks[who])}}
}

func (ks *keyServer) query(_ userDevice, body []byte) any {
	var req struct {
		DeviceKeys map[id.UserID][]id.DeviceID `json:"device_keys"`
	}
	_ = json.Unmarshal(body, &req)
	out := map[id.UserID]map[id.DeviceID]json.RawMessage{}
	for user := range req.DeviceKeys {
		ks.queries[user]++
		out[user] = map[id.DeviceID]json.RawMessage{}
		for ud, raw := range ks.devices {
			if ud.user == user {
				out[user][ud.device] = raw
			}
		}
	}
	return map[string]any{"device_keys": out}
}

func (ks *keyServer) claim(_ userDevice, body []byte) any {
	var req struct {
		OneTimeKeys map[id.UserID]map[id.DeviceID]string `json:"one_time_keys"`
	}
	_ = json.Unmarshal(body, &req)
	out := map[id.UserID]map[id.DeviceID]map[string]json.RawMessage{}
	for user, devices := range req.OneTimeKeys {
		for device := range devices {
			ud := userDevice{user, device}
			key, raw := ks.takeKey(ud)
			if key == "" {
				continue
			}
			if out[user] == nil {
				out[user] = map[id.DeviceID]map[string]json.RawMessage{}
			}
			out[user][device] = map[string]json.RawMessage{key: raw}
		}
	}
	return map[string]any{"one_time_keys": out}
}

// takeKey hands out a one-time key in ID order, or the fallback key.
func (ks *keyServer) takeKey(ud userDevice) (string, json.RawMessage) {
	var ids []string
	for k := range ks.otks[ud] {
		ids = append(ids, k)
	}
	if len(ids) > 0 {
		sort.Strings(ids)
		raw := ks.otks[ud][ids[0]]
		delete(ks.otks[ud], ids[0])
		return ids[0], raw
	}
	if fb := ks.fallback[ud]; fb != nil {
		fb.used = true
		return fb.id, fb.raw
	}
	return "", nil
}

func (ks *keyServer) otkCount(user id.UserID, device id.DeviceID) int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return len(ks.otks[userDevice{user, device}])
}

func (ks *keyServer) fallbackOf(user id.UserID, device id.DeviceID) (keyID string, used bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	fb := ks.fallback[userDevice{user, device}]
	if fb == nil {
		return "", false
	}
	return fb.id, fb.used
}

func (ks *keyServer) queriesOf(user id.UserID) int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.queries[user]
}

func (ks *keyServer) uploadCount() int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.uploads
}

// claimAll claims every one-time key of a device, leaving the fallback.
func (ks *keyServer) claimAll(user id.UserID, device id.DeviceID) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.otks[userDevice{user, device}] = map[string]json.RawMessage{}
}

const (
	cryptoBot   = id.UserID("@focus:example.org")
	cryptoAlice = id.UserID("@alice:example.org")
)

// newTestOlm is an Olm for user/device with its data in dir, talking to
// ks, with its keys published.
func newTestOlm(t *testing.T, ks *keyServer, user id.UserID, device id.DeviceID, dir string) *Olm {
	t.Helper()
	o := openTestOlm(t, ks, user, device, dir)
	if err := o.publishKeys(context.Background()); err != nil {
		t.Fatalf("publish keys of %s/%s: %v", user, device, err)
	}
	return o
}

// openTestOlm is newTestOlm without the publishing.
func openTestOlm(t *testing.T, ks *keyServer, user id.UserID, device id.DeviceID, dir string) *Olm {
	t.Helper()
	cfg := Config{
		HomeserverURL: ks.srv.URL, ServerName: user.Homeserver(), ASToken: "as", HSToken: "hs",
		BotLocalpart: user.Localpart(), DeviceID: device, DataDir: dir,
	}
	o, err := NewOlm(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	cli := ks.client(user, device)
	o.client = func(context.Context) (*mautrix.Client, error) { return cli, nil }
	t.Cleanup(func() { o.Close() })
	return o
}

// encryptedEvent is what the Transport hands DecryptToDevice: an
// m.room.encrypted to-device event from sender.
func encryptedEvent(t testing.TB, sender id.UserID, content any) *event.Event {
	t.Helper()
	raw, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	return &event.Event{
		Sender:  sender,
		Type:    event.Type{Type: typeRoomEncrypted, Class: event.ToDeviceEventType},
		Content: event.Content{VeryRaw: raw},
	}
}

// send encrypts (typ, content) from o to a device, as if it had written
// encrypted first, and returns the event the device receives.
func send(t *testing.T, o *Olm, to id.UserID, device id.DeviceID, typ string, content any) *event.Event {
	t.Helper()
	enc, err := o.encrypt(context.Background(), to, device, typ, content)
	if err != nil {
		t.Fatalf("encrypt %s: %v", typ, err)
	}
	return encryptedEvent(t, o.user, enc)
}

func decryptOK(t *testing.T, o *Olm, evt *event.Event, wantType string, want map[string]any) *event.Event {
	t.Helper()
	got, err := o.DecryptToDevice(context.Background(), evt)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	if got.Type != (event.Type{Type: wantType, Class: event.ToDeviceEventType}) {
		t.Errorf("type %+v, want %s as a to-device type", got.Type, wantType)
	}
	if got.Sender != evt.Sender || !got.Mautrix.WasEncrypted {
		t.Errorf("sender %s, was encrypted %v", got.Sender, got.Mautrix.WasEncrypted)
	}
	if compactJSON(got.Content.VeryRaw) != string(mustJSON(want)) {
		t.Errorf("content %s, want %s", got.Content.VeryRaw, mustJSON(want))
	}
	if got.Content.Raw["call_id"] != want["call_id"] {
		t.Errorf("Content.Raw = %v", got.Content.Raw)
	}
	return got
}

func TestCryptoRoundTrip(t *testing.T) {
	ks := newKeyServer(t)
	botDir := t.TempDir()
	bot := newTestOlm(t, ks, cryptoBot, "FOCUS", botDir)
	alice := newTestOlm(t, ks, cryptoAlice, "ALICE", t.TempDir())
	if n := ks.otkCount(cryptoBot, "FOCUS"); n != otkTarget {
		t.Fatalf("the bot published %d one-time keys, want %d", n, otkTarget)
	}
	if fb, _ := ks.fallbackOf(cryptoBot, "FOCUS"); fb == "" {
		t.Fatal("the bot published no fallback key")
	}

	// Alice invites, encrypted: a pre-key message on a new session.
	invite := callInvite("c1", 0)
	evt := send(t, alice, cryptoBot, "FOCUS", "m.call.invite", invite)
	got := decryptOK(t, bot, evt, "m.call.invite", invite)
	if ts := got.Mautrix.TrustSource; ts == nil || ts.DeviceID != "ALICE" || ts.UserID != cryptoAlice {
		t.Errorf("trust source %+v, want alice's device", ts)
	}
	if n := ks.otkCount(cryptoBot, "FOCUS"); n != otkTarget-1 {
		t.Errorf("server holds %d one-time keys after one claim", n)
	}

	// The bot answers encrypted, because alice's device wrote encrypted;
	// bob's device, which did not, gets plaintext.
	answer := map[string]any{"call_id": "c1", "seq": 0, "party_id": "FOCUS"}
	typ, content, err := bot.EncryptToDevice(context.Background(), cryptoAlice, "ALICE", event.Type{Type: "m.call.answer"}, answer)
	if err != nil {
		t.Fatal(err)
	}
	if typ.Type != typeRoomEncrypted || typ.Class != event.ToDeviceEventType {
		t.Fatalf("type %+v, want m.room.encrypted", typ)
	}
	enc := content.(*event.EncryptedEventContent)
	if enc.SenderKey != bot.identity || enc.OlmCiphertext[alice.identity].Type != id.OlmMsgTypeMsg {
		t.Errorf("encrypted content %+v: want a normal message on alice's session", enc)
	}
	decryptOK(t, alice, encryptedEvent(t, cryptoBot, content), "m.call.answer", answer)
	typ, content, err = bot.EncryptToDevice(context.Background(), "@bob:example.org", "BOB", event.Type{Type: "m.call.answer"}, answer)
	if err != nil || typ.Type != "m.call.answer" || content.(map[string]any)["call_id"] != "c1" {
		t.Errorf("to a device that never wrote encrypted: %v %v %v", typ, content, err)
	}

	// Alice's next message is a normal one.
	cand := map[string]any{"call_id": "c1", "seq": 1}
	evt = send(t, alice, cryptoBot, "FOCUS", "m.call.candidates", cand)
	decryptOK(t, bot, evt, "m.call.candidates", cand)

	// The files are private.
	for _, name := range []string{olmKeyFile, olmAccountFile, filepath.Join(olmSessionDir, sessionFile(alice.identity))} {
		info, err := os.Stat(filepath.Join(botDir, olmDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", name, info.Mode().Perm())
		}
	}

	// Restarted, the bot has the same identity and its sessions.
	ed, curve := bot.IdentityKeys()
	bot.Close()
	uploads := ks.uploadCount()
	bot2 := newTestOlm(t, ks, cryptoBot, "FOCUS", botDir)
	if ed2, curve2 := bot2.IdentityKeys(); ed2 != ed || curve2 != curve {
		t.Fatalf("identity changed across a restart: %s %s -> %s %s", ed, curve, ed2, curve2)
	}
	if n := ks.uploadCount() - uploads; n != 2 {
		// One upload to learn the count, and one for the key claimed.
		t.Errorf("%d uploads at restart, want 2", n)
	}
	evt = send(t, alice, cryptoBot, "FOCUS", "m.call.candidates", map[string]any{"call_id": "c1", "seq": 2})
	decryptOK(t, bot2, evt, "m.call.candidates", map[string]any{"call_id": "c1", "seq": 2})
	typ, content, err = bot2.EncryptToDevice(context.Background(), cryptoAlice, "ALICE", event.Type{Type: "m.call.hangup"}, map[string]any{"call_id": "c1"})
	if err != nil || typ.Type != typeRoomEncrypted {
		t.Fatalf("after restart: %v %v", typ, err)
	}
	decryptOK(t, alice, encryptedEvent(t, cryptoBot, content), "m.call.hangup", map[string]any{"call_id": "c1"})
}

func TestCryptoRejects(t *testing.T) {
	ks := newKeyServer(t)
	bot := newTestOlm(t, ks, cryptoBot, "FOCUS", t.TempDir())
	alice := newTestOlm(t, ks, cryptoAlice, "ALICE", t.TempDir())
	// ghost has a device of alice's the homeserver never heard of.
	ghost := openTestOlm(t, ks, cryptoAlice, "GHOST", t.TempDir())
	ctx := context.Background()
	botDev := deviceKeys{user: cryptoBot, device: "FOCUS", signing: bot.signing, identity: bot.identity}

	// raw encrypts plaintext as it is, from o.
	raw := func(o *Olm, plain map[string]any) map[string]any {
		t.Helper()
		var enc *event.EncryptedEventContent
		var err error
		o.mu.Lock()
		enc, err = o.encryptWithSession(botDev, mustJSON(plain), nil)
		o.mu.Unlock()
		if err != nil {
			otk, err := o.claimKey(ctx, botDev)
			if err != nil {
				t.Fatal(err)
			}
			o.mu.Lock()
			enc, err = o.encryptWithSession(botDev, mustJSON(plain), &otk)
			o.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
		}
		var m map[string]any
		_ = json.Unmarshal(mustJSON(enc), &m)
		return m
	}
	payload := func(o *Olm, change func(map[string]any)) map[string]any {
		p := map[string]any{
			"type": "m.call.invite", "content": callInvite("c1", 0),
			"sender": o.user, "sender_device": o.device, "keys": map[string]any{"ed25519": o.signing},
			"recipient": cryptoBot, "recipient_keys": map[string]any{"ed25519": bot.signing},
		}
		if change != nil {
			change(p)
		}
		return p
	}
	good := raw(alice, payload(alice, nil))
	if _, err := bot.DecryptToDevice(ctx, encryptedEvent(t, cryptoAlice, good)); err != nil {
		t.Fatalf("the untampered message: %v", err)
	}

	for _, tc := range []struct {
		name    string
		sender  id.UserID
		content map[string]any
		want    string
	}{
		{"megolm", cryptoAlice, map[string]any{"algorithm": id.AlgorithmMegolmV1, "sender_key": alice.identity, "ciphertext": "AAAA", "session_id": "s"}, "algorithm"},
		{"no sender key", cryptoAlice, map[string]any{"algorithm": id.AlgorithmOlmV1, "ciphertext": map[string]any{string(bot.identity): map[string]any{"type": 0, "body": "AAAA"}}}, "sender_key"},
		{"not for this device", cryptoAlice, map[string]any{"algorithm": id.AlgorithmOlmV1, "sender_key": alice.identity, "ciphertext": map[string]any{"someoneelse": map[string]any{"type": 0, "body": "AAAA"}}}, "nothing in it"},
		{"message type", cryptoAlice, map[string]any{"algorithm": id.AlgorithmOlmV1, "sender_key": alice.identity, "ciphertext": map[string]any{string(bot.identity): map[string]any{"type": 7, "body": "AAAA"}}}, "message type"},
		{"garbage pre-key", cryptoAlice, map[string]any{"algorithm": id.AlgorithmOlmV1, "sender_key": alice.identity, "ciphertext": map[string]any{string(bot.identity): map[string]any{"type": 0, "body": "bm90IG9sbQ"}}}, "olm"},
		{"garbage message", cryptoAlice, map[string]any{"algorithm": id.AlgorithmOlmV1, "sender_key": "AAAA", "ciphertext": map[string]any{string(bot.identity): map[string]any{"type": 1, "body": "bm90IG9sbQ"}}}, "no Olm session"},
		{"not JSON", cryptoAlice, nil, "content"},
		{"another sender", "@mallory:example.org", raw(alice, payload(alice, nil)), "plaintext sender"},
		{"another recipient", cryptoAlice, raw(alice, payload(alice, func(p map[string]any) { p["recipient"] = "@other:example.org" })), "recipient"},
		{"another recipient key", cryptoAlice, raw(alice, payload(alice, func(p map[string]any) { p["recipient_keys"] = map[string]any{"ed25519": alice.signing} })), "recipient key"},
		{"another signing key", cryptoAlice, raw(alice, payload(alice, func(p map[string]any) { p["keys"] = map[string]any{"ed25519": bot.signing} })), "signing key"},
		{"no type", cryptoAlice, raw(alice, payload(alice, func(p map[string]any) { delete(p, "type") })), "without type"},
		{"content not an object", cryptoAlice, raw(alice, payload(alice, func(p map[string]any) { p["content"] = "x" })), "not an object"},
		{"unpublished device", cryptoAlice, raw(ghost, payload(ghost, nil)), "no device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evt := encryptedEvent(t, tc.sender, tc.content)
			if tc.content == nil {
				evt.Content.VeryRaw = []byte("{not json")
			}
			got, err := bot.DecryptToDevice(ctx, evt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, %v; want an error with %q", got, err, tc.want)
			}
		})
	}
	// None of those made alice's or anyone else's replies encrypted
	// wrongly: only ALICE wrote encrypted.
	for _, dev := range []id.DeviceID{"GHOST", "OTHER"} {
		if typ, _, _ := bot.EncryptToDevice(ctx, cryptoAlice, dev, event.Type{Type: "m.call.hangup"}, map[string]any{}); typ.Type != "m.call.hangup" {
			t.Errorf("device %s gets %s", dev, typ.Type)
		}
	}
}

func TestCryptoKeyCounts(t *testing.T) {
	ks := newKeyServer(t)
	bot := newTestOlm(t, ks, cryptoBot, "FOCUS", t.TempDir())
	ctx := context.Background()
	now := time.Now()
	bot.now = func() time.Time { return now }

	// Claims ran the keys low: the bot tops them up from the server's own
	// count, once per check interval.
	for range otkTarget - 5 {
		ks.mu.Lock()
		ks.takeKey(userDevice{cryptoBot, "FOCUS"})
		ks.mu.Unlock()
	}
	now = now.Add(otkCheckInterval)
	if err := bot.replenish(ctx, true, false); err != nil {
		t.Fatal(err)
	}
	if n := ks.otkCount(cryptoBot, "FOCUS"); n != otkTarget {
		t.Errorf("%d one-time keys after the top-up, want %d", n, otkTarget)
	}
	uploads := ks.uploadCount()
	if err := bot.replenish(ctx, true, false); err != nil {
		t.Fatal(err)
	}
	if ks.uploadCount() != uploads {
		t.Error("checked the count again within the check interval")
	}

	// The fallback key is replaced once it is used, but not more often
	// than fallbackRotateInterval.
	first, _ := ks.fallbackOf(cryptoBot, "FOCUS")
	if err := bot.replenish(ctx, false, true); err != nil {
		t.Fatal(err)
	}
	if fb, _ := ks.fallbackOf(cryptoBot, "FOCUS"); fb != first {
		t.Errorf("fallback key replaced within the interval: %s -> %s", first, fb)
	}
	now = now.Add(fallbackRotateInterval)
	if err := bot.replenish(ctx, false, true); err != nil {
		t.Fatal(err)
	}
	second, used := ks.fallbackOf(cryptoBot, "FOCUS")
	if second == first || used {
		t.Errorf("fallback key %s (used %v) after rotation, was %s", second, used, first)
	}

	// With no one-time keys left, a session starts on the fallback key;
	// its message still decrypts after the next rotation (the previous
	// fallback key is kept), and the fallback key is not spent by it.
	ks.claimAll(cryptoBot, "FOCUS")
	alice := newTestOlm(t, ks, cryptoAlice, "ALICE", t.TempDir())
	bob := newTestOlm(t, ks, "@bob:example.org", "BOB", t.TempDir())
	early := send(t, alice, cryptoBot, "FOCUS", "m.call.invite", callInvite("c1", 0))
	if _, used := ks.fallbackOf(cryptoBot, "FOCUS"); !used {
		t.Fatal("alice did not get the fallback key")
	}
	now = now.Add(fallbackRotateInterval)
	if err := bot.replenish(ctx, false, true); err != nil {
		t.Fatal(err)
	}
	if third, _ := ks.fallbackOf(cryptoBot, "FOCUS"); third == second {
		t.Fatal("the used fallback key was not replaced")
	}
	decryptOK(t, bot, early, "m.call.invite", callInvite("c1", 0))
	ks.claimAll(cryptoBot, "FOCUS")
	decryptOK(t, bot, send(t, bob, cryptoBot, "FOCUS", "m.call.invite", callInvite("c2", 0)), "m.call.invite", callInvite("c2", 0))
	ks.claimAll(cryptoBot, "FOCUS")
	carol := newTestOlm(t, ks, "@carol:example.org", "CAROL", t.TempDir())
	decryptOK(t, bot, send(t, carol, cryptoBot, "FOCUS", "m.call.invite", callInvite("c3", 0)), "m.call.invite", callInvite("c3", 0))
}

func TestCryptoKeyCountsInBackground(t *testing.T) {
	ks := newKeyServer(t)
	bot := openTestOlm(t, ks, cryptoBot, "FOCUS", t.TempDir())
	client := bot.client
	loggedIn := make(chan struct{})
	bot.client = nil
	bot.attach(client, loggedIn, func(ctx context.Context, _ string, f func(context.Context) error) bool {
		return f(ctx) == nil
	})
	bot.attach(client, loggedIn, nil) // a second Attach does nothing
	ctx := context.Background()

	// Counts for another device are not the bot's.
	bot.KeyCounts(ctx, mautrix.OTKCount{UserID: cryptoBot, DeviceID: "OTHER"}, []id.KeyAlgorithm{})
	if ks.uploadCount() != 0 {
		t.Fatal("uploaded before the device logged in")
	}
	close(loggedIn)
	waitFor(t, "the keys published", func() bool {
		bot.mu.Lock()
		defer bot.mu.Unlock()
		return bot.state.FallbackPublished != 0
	})
	if n := ks.otkCount(cryptoBot, "FOCUS"); n != otkTarget {
		t.Fatalf("%d one-time keys published", n)
	}

	ks.claimAll(cryptoBot, "FOCUS")
	bot.mu.Lock()
	bot.state.FallbackPublished = 0 // long ago
	bot.mu.Unlock()
	bot.uploadMu.Lock()
	bot.lastOTKCheck = time.Time{}
	bot.uploadMu.Unlock()
	fb, _ := ks.fallbackOf(cryptoBot, "FOCUS")
	bot.KeyCounts(ctx, mautrix.OTKCount{SignedCurve25519: 0, UserID: cryptoBot, DeviceID: "FOCUS"}, []id.KeyAlgorithm{})
	waitFor(t, "keys replenished", func() bool {
		fb2, _ := ks.fallbackOf(cryptoBot, "FOCUS")
		return ks.otkCount(cryptoBot, "FOCUS") == otkTarget && fb2 != fb
	})
	bot.Close()
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCryptoReplacesKeysOfAnOldIdentity(t *testing.T) {
	ks := newKeyServer(t)
	newTestOlm(t, ks, cryptoBot, "FOCUS", t.TempDir()).Close()
	// The data dir is lost; the device on the homeserver is not.
	bot := newTestOlm(t, ks, cryptoBot, "FOCUS", t.TempDir())
	alice := newTestOlm(t, ks, cryptoAlice, "ALICE", t.TempDir())
	// Every key alice can claim is the new identity's: the invite
	// decrypts (claimKey checks the signature against the new keys).
	for i := range 3 {
		alice.mu.Lock()
		_ = os.RemoveAll(filepath.Join(alice.dir, olmSessionDir, sessionFile(bot.identity)))
		alice.mu.Unlock()
		inv := callInvite("c1", i)
		decryptOK(t, bot, send(t, alice, cryptoBot, "FOCUS", "m.call.invite", inv), "m.call.invite", inv)
	}
	if n := ks.otkCount(cryptoBot, "FOCUS"); n != otkTarget-3 {
		t.Errorf("server holds %d one-time keys", n)
	}
}

func TestCryptoDeviceLists(t *testing.T) {
	ks := newKeyServer(t)
	bot := newTestOlm(t, ks, cryptoBot, "FOCUS", t.TempDir())
	alice := newTestOlm(t, ks, cryptoAlice, "ALICE", t.TempDir())
	ctx := context.Background()
	decryptOK(t, bot, send(t, alice, cryptoBot, "FOCUS", "m.call.invite", callInvite("c1", 0)), "m.call.invite", callInvite("c1", 0))
	q := ks.queriesOf(cryptoAlice)
	for range 2 {
		if _, _, err := bot.EncryptToDevice(ctx, cryptoAlice, "ALICE", event.Type{Type: "m.call.answer"}, map[string]any{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := ks.queriesOf(cryptoAlice) - q; n != 0 {
		t.Errorf("%d key queries with the keys cached", n)
	}
	bot.DeviceLists(ctx, mautrix.DeviceLists{Changed: []id.UserID{cryptoAlice}})
	if _, _, err := bot.EncryptToDevice(ctx, cryptoAlice, "ALICE", event.Type{Type: "m.call.answer"}, map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if n := ks.queriesOf(cryptoAlice) - q; n != 1 {
		t.Errorf("%d key queries after the device list changed, want 1", n)
	}
}

func TestCryptoAccountOfAnotherDevice(t *testing.T) {
	ks := newKeyServer(t)
	dir := t.TempDir()
	first := newTestOlm(t, ks, cryptoBot, "FOCUS", dir)
	ed, _ := first.IdentityKeys()
	first.Close()
	second := openTestOlm(t, ks, cryptoBot, "FOCUS2", dir)
	if ed2, _ := second.IdentityKeys(); ed2 == ed {
		t.Error("a new device ID kept the old device's identity")
	}
	// A corrupt account is an error that says what to do.
	if err := os.WriteFile(filepath.Join(dir, olmDir, olmAccountFile), []byte(`{"user_id":"@focus:example.org","device_id":"FOCUS2","account":"AAAA"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewOlm(Config{HomeserverURL: ks.srv.URL, ServerName: "example.org", ASToken: "a", HSToken: "h", BotLocalpart: "focus", DeviceID: "FOCUS2", DataDir: dir}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "delete the olm directory") {
		t.Errorf("corrupt account: %v", err)
	}
}

// FuzzCryptoDecrypt feeds DecryptToDevice arbitrary content: it must
// return an error or an event, never panic.
func FuzzCryptoDecrypt(f *testing.F) {
	ks := newKeyServer(f)
	dir := f.TempDir()
	cfg := func(local string, device id.DeviceID, dir string) Config {
		return Config{HomeserverURL: ks.srv.URL, ServerName: "example.org", ASToken: "a", HSToken: "h", BotLocalpart: local, DeviceID: device, DataDir: dir}
	}
	open := func(local string, device id.DeviceID, dir string) *Olm {
		o, err := NewOlm(cfg(local, device, dir), zerolog.Nop())
		if err != nil {
			f.Fatal(err)
		}
		cli := ks.client(o.user, device)
		o.client = func(context.Context) (*mautrix.Client, error) { return cli, nil }
		if err := o.publishKeys(context.Background()); err != nil {
			f.Fatal(err)
		}
		return o
	}
	bot := open("focus", "FOCUS", dir)
	alice := open("alice", "ALICE", f.TempDir())
	for i := range 2 {
		enc, err := alice.encrypt(context.Background(), cryptoBot, "FOCUS", "m.call.invite", callInvite("c1", i))
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(mustJSON(enc)))
	}
	f.Add([]byte(`{"algorithm":"m.olm.v1.curve25519-aes-sha2","sender_key":"x","ciphertext":{"` + string(bot.identity) + `":{"type":0,"body":"AwogAAAA"}}}`))
	f.Add([]byte(`{"algorithm":"m.olm.v1.curve25519-aes-sha2","ciphertext":7}`))
	f.Fuzz(func(t *testing.T, content []byte) {
		evt := &event.Event{Sender: cryptoAlice, Type: event.Type{Type: typeRoomEncrypted, Class: event.ToDeviceEventType}, Content: event.Content{VeryRaw: content}}
		got, err := bot.DecryptToDevice(context.Background(), evt)
		if err == nil && (got == nil || got.Type.Type == "") {
			t.Fatalf("no error and no event for %s", content)
		}
	})
}
