package matrix

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Test identities.
const (
	testServer  = "hs.test"
	testBot     = id.UserID("@focus:hs.test")
	testDevice  = id.DeviceID("FOCUSDEV")
	testASToken = "as-secret"
	testHSToken = "hs-secret"
	testRoom    = id.RoomID("!room:hs.test")
	testAlice   = id.UserID("@alice:hs.test")
)

// fakeHS is a homeserver just big enough for the Transport: appservice
// login, whoami, filters, /sync with to-device messages and room events,
// joined_rooms, join, leave, room state and sendToDevice.
type fakeHS struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change, to wake /sync
	tokens  map[string]bool
	logins  []map[string]any
	nextTok int
	// registered is the bot's registration request, once made.
	registered map[string]any

	// /sync stream: item i is returned to a since of i (or "" for 0).
	stream     []syncItem
	sinces     []string
	syncErr    string // errcode to answer /sync with, once
	joinedRoom map[id.RoomID]bool
	state      map[id.RoomID][]*event.Event
	joins      []id.RoomID
	leaves     []leaveCall
	sent       []sentMessage
}

type syncItem struct {
	toDevice []map[string]any
	join     map[id.RoomID][]map[string]any // timeline events
	invite   map[id.RoomID][]map[string]any
	leave    map[id.RoomID][]map[string]any
}

type leaveCall struct {
	room   id.RoomID
	reason string
}

type sentMessage struct {
	token, typ, txn string
	body            map[string]any
}

func newFakeHS(t *testing.T) *fakeHS {
	hs := &fakeHS{
		t:          t,
		changed:    make(chan struct{}),
		tokens:     map[string]bool{},
		joinedRoom: map[id.RoomID]bool{},
		state:      map[id.RoomID][]*event.Event{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_matrix/client/v3/login", hs.login)
	mux.HandleFunc("POST /_matrix/client/v3/register", hs.register)
	mux.HandleFunc("GET /_matrix/client/v3/account/whoami", hs.deviceAuth(hs.whoami))
	mux.HandleFunc("POST /_matrix/client/v3/user/{user}/filter", hs.deviceAuth(func(w http.ResponseWriter, r *http.Request, _ string) {
		writeJSON200(w, map[string]any{"filter_id": "f1"})
	}))
	mux.HandleFunc("GET /_matrix/client/v3/sync", hs.deviceAuth(hs.sync))
	mux.HandleFunc("PUT /_matrix/client/v3/sendToDevice/{type}/{txn}", hs.deviceAuth(hs.sendToDevice))
	mux.HandleFunc("GET /_matrix/client/v3/joined_rooms", hs.asAuth(hs.joinedRooms))
	mux.HandleFunc("POST /_matrix/client/v3/join/{room}", hs.asAuth(hs.join))
	mux.HandleFunc("POST /_matrix/client/v3/rooms/{room}/leave", hs.asAuth(hs.leave))
	mux.HandleFunc("GET /_matrix/client/v3/rooms/{room}/state", hs.asAuth(hs.roomState))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake homeserver: unexpected %s %s", r.Method, r.URL.Path)
		writeErr(w, 404, "M_UNRECOGNIZED")
	})
	hs.srv = httptest.NewServer(mux)
	t.Cleanup(hs.srv.Close)
	return hs
}

func writeJSON200(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"errcode": code, "error": code})
}

func bearer(r *http.Request) string {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// notify wakes waiting /syncs. Called with hs.mu held.
func (hs *fakeHS) notify() {
	close(hs.changed)
	hs.changed = make(chan struct{})
}

func (hs *fakeHS) asAuth(h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if bearer(r) != testASToken {
			writeErr(w, 401, "M_UNKNOWN_TOKEN")
			return
		}
		if u := r.URL.Query().Get("user_id"); u != string(testBot) {
			hs.t.Errorf("fake homeserver: %s without user_id=%s (got %q)", r.URL.Path, testBot, u)
		}
		h(w, r)
	}
}

func (hs *fakeHS) deviceAuth(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		hs.mu.Lock()
		ok := hs.tokens[tok]
		hs.mu.Unlock()
		if !ok {
			writeErr(w, 401, "M_UNKNOWN_TOKEN")
			return
		}
		h(w, r, tok)
	}
}

func (hs *fakeHS) login(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	if bearer(r) != testASToken {
		writeErr(w, 401, "M_UNKNOWN_TOKEN")
		return
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.logins = append(hs.logins, body)
	hs.nextTok++
	tok := "device-token-" + strconv.Itoa(hs.nextTok)
	hs.tokens[tok] = true
	writeJSON200(w, map[string]any{"user_id": testBot, "access_token": tok, "device_id": body["device_id"]})
}

func (hs *fakeHS) register(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	if bearer(r) != testASToken {
		writeErr(w, 401, "M_UNKNOWN_TOKEN")
		return
	}
	if r.URL.Query().Has("user_id") {
		hs.t.Errorf("fake homeserver: /register with user_id=%s", r.URL.Query().Get("user_id"))
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.registered != nil {
		writeErr(w, 400, "M_USER_IN_USE")
		return
	}
	hs.registered = body
	writeJSON200(w, map[string]any{"user_id": testBot})
}

func (hs *fakeHS) whoami(w http.ResponseWriter, _ *http.Request, _ string) {
	writeJSON200(w, map[string]any{"user_id": testBot, "device_id": testDevice})
}

// revokeTokens logs every device token out.
func (hs *fakeHS) revokeTokens() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.tokens = map[string]bool{}
}

func (hs *fakeHS) push(item syncItem) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.stream = append(hs.stream, item)
	hs.notify()
}

func (hs *fakeHS) sync(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	since := q.Get("since")
	if q.Get("filter") != "f1" {
		hs.t.Errorf("fake homeserver: /sync with filter %q", q.Get("filter"))
	}
	pos := 0
	if since != "" {
		var err error
		if pos, err = strconv.Atoi(since); err != nil {
			writeErr(w, 400, "M_INVALID_PARAM")
			return
		}
	}
	timeout, _ := strconv.Atoi(q.Get("timeout"))
	deadline := time.NewTimer(time.Duration(timeout) * time.Millisecond)
	defer deadline.Stop()
	hs.mu.Lock()
	hs.sinces = append(hs.sinces, since)
	if hs.syncErr != "" {
		code := hs.syncErr
		hs.syncErr = ""
		hs.mu.Unlock()
		writeErr(w, 401, code)
		return
	}
	for len(hs.stream) <= pos && timeout > 0 {
		ch := hs.changed
		hs.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			timeout = 0
		case <-r.Context().Done():
			return
		}
		hs.mu.Lock()
	}
	items := append([]syncItem(nil), hs.stream[min(pos, len(hs.stream)):]...)
	next := len(hs.stream)
	hs.mu.Unlock()

	resp := map[string]any{"next_batch": strconv.Itoa(next)}
	var toDevice []map[string]any
	join, invite, leave := map[id.RoomID]any{}, map[id.RoomID]any{}, map[id.RoomID]any{}
	for _, it := range items {
		toDevice = append(toDevice, it.toDevice...)
		for room, evts := range it.join {
			join[room] = map[string]any{"timeline": map[string]any{"events": evts}}
		}
		for room, evts := range it.invite {
			invite[room] = map[string]any{"invite_state": map[string]any{"events": evts}}
		}
		for room, evts := range it.leave {
			leave[room] = map[string]any{"timeline": map[string]any{"events": evts}}
		}
	}
	resp["to_device"] = map[string]any{"events": toDevice}
	resp["rooms"] = map[string]any{"join": join, "invite": invite, "leave": leave}
	resp["device_one_time_keys_count"] = map[string]int{"signed_curve25519": 50}
	writeJSON200(w, resp)
}

func (hs *fakeHS) sendToDevice(w http.ResponseWriter, r *http.Request, tok string) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErr(w, 400, "M_NOT_JSON")
		return
	}
	hs.mu.Lock()
	hs.sent = append(hs.sent, sentMessage{token: tok, typ: r.PathValue("type"), txn: r.PathValue("txn"), body: body})
	hs.mu.Unlock()
	writeJSON200(w, map[string]any{})
}

func (hs *fakeHS) joinedRooms(w http.ResponseWriter, _ *http.Request) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	rooms := []id.RoomID{}
	for r, ok := range hs.joinedRoom {
		if ok {
			rooms = append(rooms, r)
		}
	}
	writeJSON200(w, map[string]any{"joined_rooms": rooms})
}

func (hs *fakeHS) join(w http.ResponseWriter, r *http.Request) {
	room := id.RoomID(r.PathValue("room"))
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.joins = append(hs.joins, room)
	hs.joinedRoom[room] = true
	hs.state[room] = append(hs.state[room], memberEvent("$botjoin"+string(room), room, testBot, testBot, "join", 1000))
	writeJSON200(w, map[string]any{"room_id": room})
}

func (hs *fakeHS) leave(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.leaves = append(hs.leaves, leaveCall{id.RoomID(r.PathValue("room")), body.Reason})
	writeJSON200(w, map[string]any{})
}

func (hs *fakeHS) roomState(w http.ResponseWriter, r *http.Request) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	evts := hs.state[id.RoomID(r.PathValue("room"))]
	if evts == nil {
		evts = []*event.Event{}
	}
	writeJSON200(w, evts)
}

func (hs *fakeHS) snapshot() (logins []map[string]any, sinces []string, joins []id.RoomID, leaves []leaveCall, sent []sentMessage) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append(logins, hs.logins...), append(sinces, hs.sinces...), append(joins, hs.joins...),
		append(leaves, hs.leaves...), append(sent, hs.sent...)
}

// memberEvent is an m.room.member state event.
func memberEvent(evtID string, room id.RoomID, sender, target id.UserID, membership string, ts int64) *event.Event {
	key := string(target)
	return &event.Event{
		ID: id.EventID(evtID), RoomID: room, Sender: sender, StateKey: &key, Timestamp: ts,
		Type:    event.StateMember,
		Content: event.Content{Raw: map[string]any{"membership": membership}, VeryRaw: mustJSON(map[string]any{"membership": membership})},
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// recorder is an Inbound that records what it is given.
type recorder struct {
	mu     sync.Mutex
	events []string // "room <type> <state_key> <event id>", "todevice <type> <sender> <content>", "left <room>"
	wake   chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) RoomEvent(_ context.Context, evt *event.Event) {
	if evt.Type.Class != event.StateEventType {
		r.add("BAD CLASS " + evt.Type.String())
	}
	r.add(fmt.Sprintf("room %s %s %s %s", evt.RoomID, evt.Type.Type, evt.GetStateKey(), evt.ID))
}

func (r *recorder) ToDevice(_ context.Context, evt *event.Event) {
	if evt.Type.Class != event.ToDeviceEventType {
		r.add("BAD CLASS " + evt.Type.String())
	}
	r.add(fmt.Sprintf("todevice %s %s %s", evt.Type.Type, evt.Sender, compactJSON(evt.Content.VeryRaw)))
}

func (r *recorder) RoomLeft(_ context.Context, room id.RoomID) { r.add("left " + string(room)) }

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// waitFor waits until the recorded events contain every one of want (as
// exact strings), failing after 5 s.
func (r *recorder) waitFor(t *testing.T, want ...string) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		got := r.list()
		missing := ""
		for _, w := range want {
			if !contains(got, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return got
		}
		select {
		case <-r.wake:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %q; got:\n%s", missing, strings.Join(got, "\n"))
		}
	}
}

// waitForPrefix waits until a recorded event starts with prefix.
func (r *recorder) waitForPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		got := r.list()
		if hasPrefix(got, prefix) {
			return got
		}
		select {
		case <-r.wake:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %q...; got:\n%s", prefix, strings.Join(got, "\n"))
		}
	}
}

func hasPrefix(list []string, prefix string) bool {
	for _, v := range list {
		if strings.HasPrefix(v, prefix) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func count(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

func compactJSON(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// testConfig is a Config for the fake homeserver and a fresh data dir.
func testConfig(hsURL, dataDir string) Config {
	return Config{
		HomeserverURL: hsURL,
		ServerName:    testServer,
		ASToken:       testASToken,
		HSToken:       testHSToken,
		BotLocalpart:  "focus",
		DeviceID:      testDevice,
		DataDir:       dataDir,
		AutoJoin:      true,
		SyncTimeout:   200 * time.Millisecond,
		MinBackoff:    10 * time.Millisecond,
		MaxBackoff:    50 * time.Millisecond,
	}
}

// running is a Transport running against a homeserver, with its
// appservice handler served.
type running struct {
	t      *Transport
	in     *recorder
	as     *httptest.Server
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startTransport(t *testing.T, cfg Config) *running {
	t.Helper()
	logs := &syncBuffer{}
	tr, err := NewTransport(cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	r := &running{t: tr, in: newRecorder(), as: httptest.NewServer(tr.Handler()), done: make(chan error, 1), logs: logs}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- tr.Run(ctx, r.in) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends Run and closes everything; safe to call twice.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of cancel")
	}
	r.as.Close()
	if err := r.t.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

// waitReady waits until Run has loaded the joined rooms.
func (r *running) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-r.t.ready:
	case <-time.After(5 * time.Second):
		t.Fatalf("Run not ready within 5 s; log:\n%s", r.logs)
	}
}

// putTxn sends a transaction to the running Transport's appservice API.
func (r *running) putTxn(t *testing.T, txnID string, body any) (int, string) {
	t.Helper()
	return doRequest(t, http.MethodPut, r.as.URL+"/_matrix/app/v1/transactions/"+txnID, testHSToken, body)
}

func doRequest(t *testing.T, method, url, token string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		rd = bytes.NewReader(mustJSON(b))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func TestRunStopsWithoutLeaks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	// Let it log in and block in a /sync long-poll.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, sinces, _, _, _ := hs.snapshot()
		if len(sinces) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.stop(t)
	hs.srv.Close()
	http.DefaultClient.CloseIdleConnections()
}

func TestRunTwiceAndNilInbound(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	if err := r.t.Run(context.Background(), newRecorder()); err == nil {
		t.Error("second Run succeeded")
	}
	tr, err := NewTransport(testConfig(hs.srv.URL, t.TempDir()), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(context.Background(), nil); err == nil {
		t.Error("Run(nil Inbound) succeeded")
	}
}

func TestNewTransportRejectsIncompleteConfig(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1", t.TempDir())
	cfg.HSToken = ""
	if _, err := NewTransport(cfg, zerolog.Nop()); err == nil {
		t.Error("NewTransport without hs_token succeeded")
	}
	cfg = testConfig("::not a url", t.TempDir())
	if _, err := NewTransport(cfg, zerolog.Nop()); err == nil {
		t.Error("NewTransport with a bad homeserver URL succeeded")
	}
}

func TestIdentity(t *testing.T) {
	tr, err := NewTransport(testConfig("http://127.0.0.1:1", t.TempDir()), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.UserID() != testBot || tr.DeviceID() != testDevice {
		t.Errorf("UserID, DeviceID = %s, %s", tr.UserID(), tr.DeviceID())
	}
}

// inviteEvent is the m.room.member invite of the bot as a transaction
// carries it.
func inviteEvent(evtID string, room id.RoomID, inviter id.UserID) map[string]any {
	return map[string]any{
		"type": "m.room.member", "event_id": evtID, "room_id": room, "sender": inviter,
		"state_key": testBot, "origin_server_ts": 500, "content": map[string]any{"membership": "invite"},
	}
}

func TestInviteJoinsAndLoadsState(t *testing.T) {
	hs := newFakeHS(t)
	hs.state[testRoom] = []*event.Event{
		memberEvent("$alicejoin", testRoom, testAlice, testAlice, "join", 200),
		{ID: "$cm", RoomID: testRoom, Sender: testAlice, StateKey: ptr("_@alice:hs.test_A_m.call"), Timestamp: 300,
			Type: event.Type{Type: "org.matrix.msc3401.call.member"}, Content: event.Content{VeryRaw: mustJSON(map[string]any{"device_id": "A"})}},
		{ID: "$name", RoomID: testRoom, Sender: testAlice, StateKey: ptr(""), Timestamp: 300,
			Type: event.StateRoomName, Content: event.Content{VeryRaw: mustJSON(map[string]any{"name": "x"})}},
	}
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	if code, _ := r.putTxn(t, "1", map[string]any{"events": []any{inviteEvent("$inv", testRoom, testAlice)}}); code != 200 {
		t.Fatal("refused")
	}
	want := []string{
		roomLine(testRoom, "m.room.member", string(testAlice), "$alicejoin"),
		roomLine(testRoom, "m.room.member", string(testBot), "$botjoin"+string(testRoom)),
		roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_A_m.call", "$cm"),
	}
	if got := r.in.list(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after the invite:\n%s\nwant (membership first, no m.room.name)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The same invite again (from /sync, say) does not join twice.
	hs.push(syncItem{invite: map[id.RoomID][]map[string]any{testRoom: {
		{"type": "m.room.member", "state_key": testBot, "sender": testAlice, "content": map[string]any{"membership": "invite"}},
	}}})
	waitSince(t, hs, "1")
	_, _, joins, _, _ := hs.snapshot()
	if len(joins) != 1 {
		t.Errorf("joined %d times", len(joins))
	}

	// An event older than the loaded state (a transaction queued while the
	// focus was away) does not undo it; a newer one is delivered.
	old := callMember("$old", testRoom, testAlice, "A", 299)
	newer := callMember("$new", testRoom, testAlice, "A", 301)
	if code, _ := r.putTxn(t, "2", map[string]any{"events": []any{old, newer}}); code != 200 {
		t.Fatal("refused")
	}
	got := r.in.waitFor(t, roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_A_m.call", "$new"))
	if contains(got, roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_A_m.call", "$old")) {
		t.Error("an event older than the loaded state was delivered")
	}

	// Events of rooms the bot is not in are not delivered.
	if code, _ := r.putTxn(t, "3", map[string]any{"events": []any{callMember("$elsewhere", "!other:hs.test", testAlice, "A", 400)}}); code != 200 {
		t.Fatal("refused")
	}
	// Banned: the ban, then RoomLeft.
	ban := map[string]any{"type": "m.room.member", "event_id": "$ban", "room_id": testRoom, "sender": testAlice,
		"state_key": testBot, "origin_server_ts": 600, "content": map[string]any{"membership": "ban"}}
	if code, _ := r.putTxn(t, "4", map[string]any{"events": []any{ban}}); code != 200 {
		t.Fatal("refused")
	}
	got = r.in.waitFor(t, "left "+string(testRoom))
	if got[len(got)-2] != roomLine(testRoom, "m.room.member", string(testBot), "$ban") {
		t.Errorf("deliveries end %v, want the ban then left", got[len(got)-2:])
	}
	for _, l := range got {
		if strings.Contains(l, "$elsewhere") {
			t.Error("delivered an event of a room the bot is not in")
		}
	}
	// After leaving, the room's events are no longer delivered.
	if code, _ := r.putTxn(t, "5", map[string]any{"events": []any{callMember("$after", testRoom, testAlice, "A", 700)}}); code != 200 {
		t.Fatal("refused")
	}
	if contains(r.in.list(), roomLine(testRoom, "org.matrix.msc3401.call.member", "_@alice:hs.test_A_m.call", "$after")) {
		t.Error("delivered an event after the bot left")
	}
}

func ptr[T any](v T) *T { return &v }

func TestInvitePolicy(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		auto    bool
		inviter id.UserID
		join    bool
		reject  string // reason contains
	}{
		{"allowed", Policy{Homeservers: []string{"hs.test"}}, true, testAlice, true, ""},
		{"homeserver refused", Policy{Homeservers: []string{"other.test"}}, true, testAlice, false, "homeserver hs.test is not in matrix.allowed_homeservers"},
		{"user refused", Policy{Users: []string{"@bob:*"}}, true, testAlice, false, "not in matrix.allowed_users"},
		{"room refused", Policy{Rooms: []string{"!calls*"}}, true, testAlice, false, "not in matrix.allowed_rooms"},
		{"auto join off", Policy{}, false, testAlice, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := newFakeHS(t)
			cfg := testConfig(hs.srv.URL, t.TempDir())
			cfg.Policy, cfg.AutoJoin = tt.policy, tt.auto
			r := startTransport(t, cfg)
			r.waitReady(t)
			if code, _ := r.putTxn(t, "1", map[string]any{"events": []any{inviteEvent("$inv", testRoom, tt.inviter)}}); code != 200 {
				t.Fatal("refused")
			}
			_, _, joins, leaves, _ := hs.snapshot()
			if (len(joins) == 1) != tt.join {
				t.Errorf("joins = %v, want join=%v", joins, tt.join)
			}
			switch {
			case tt.reject == "" && len(leaves) > 0:
				t.Errorf("rejected: %v", leaves)
			case tt.reject != "" && (len(leaves) != 1 || !strings.Contains(leaves[0].reason, tt.reject)):
				t.Errorf("leaves = %v, want a rejection saying %q", leaves, tt.reject)
			}
			if !tt.join && len(r.in.list()) != 0 {
				t.Errorf("delivered %v", r.in.list())
			}
		})
	}
}

func TestStartLoadsJoinedRooms(t *testing.T) {
	hs := joinedFakeHS(t)
	hs.joinedRoom["!forbidden:hs.test"] = true
	hs.state["!forbidden:hs.test"] = []*event.Event{memberEvent("$f", "!forbidden:hs.test", testAlice, testAlice, "join", 1)}
	cfg := testConfig(hs.srv.URL, t.TempDir())
	cfg.Policy.Rooms = []string{string(testRoom)}
	r := startTransport(t, cfg)
	r.waitReady(t)
	want := []string{
		roomLine(testRoom, "m.room.member", string(testAlice), "$alicejoin"),
		roomLine(testRoom, "m.room.member", string(testBot), "$botjoin"),
	}
	if got := r.in.list(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("at start:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The same events in the first /sync's timeline are not delivered again.
	hs.push(syncItem{join: map[id.RoomID][]map[string]any{testRoom: {
		{"type": "m.room.member", "state_key": testAlice, "sender": testAlice, "event_id": "$alicejoin", "origin_server_ts": 200, "content": map[string]any{"membership": "join"}},
	}}})
	waitSince(t, hs, "1")
	if n := len(r.in.list()); n != 2 {
		t.Errorf("%d deliveries, want the 2 of the loaded state", n)
	}
}

// sendingInbound sends a to-device message from inside every RoomEvent,
// as a focus hanging up on a membership change does.
type sendingInbound struct {
	*recorder
	t    *Transport
	errs chan error
}

func (s *sendingInbound) RoomEvent(ctx context.Context, evt *event.Event) {
	s.recorder.RoomEvent(ctx, evt)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.errs <- s.t.SendToDevice(sctx, testAlice, "ALICEDEV", event.Type{Type: "m.call.hangup"}, map[string]any{"call_id": "c", "seq": 0})
}

func TestSendFromInsideDeliveryAtStart(t *testing.T) {
	hs := joinedFakeHS(t)
	tr, err := NewTransport(testConfig(hs.srv.URL, t.TempDir()), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	in := &sendingInbound{recorder: newRecorder(), t: tr, errs: make(chan error, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, in) }()
	defer func() { cancel(); <-done }()
	for range 2 { // the loaded state: alice and the bot
		select {
		case err := <-in.errs:
			if err != nil {
				t.Fatalf("SendToDevice inside the initial delivery: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("SendToDevice inside the initial delivery hangs")
		}
	}
}

func TestReinviteAfterKickJoinsAgain(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	kick := map[string]any{"type": "m.room.member", "event_id": "$kick", "room_id": testRoom, "sender": testAlice,
		"state_key": testBot, "origin_server_ts": 600, "content": map[string]any{"membership": "leave"}}
	for i, evt := range []map[string]any{inviteEvent("$inv1", testRoom, testAlice), kick, inviteEvent("$inv2", testRoom, testAlice)} {
		if code, _ := r.putTxn(t, fmt.Sprint(i), map[string]any{"events": []any{evt}}); code != 200 {
			t.Fatal("refused")
		}
	}
	_, _, joins, _, _ := hs.snapshot()
	if len(joins) != 2 {
		t.Errorf("joins = %v, want a second join after the kick", joins)
	}
	if got := r.in.list(); count(got, "left "+string(testRoom)) != 1 {
		t.Errorf("deliveries:\n%s", strings.Join(got, "\n"))
	}
}
