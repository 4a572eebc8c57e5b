package dendrite

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestBuild only makes sure the binaries are built and cached, so that
// test.sh can pay for a cold build once, before the race-checked run.
func TestBuild(t *testing.T) {
	b := Require(t)
	out, err := exec.Command(b.Dendrite, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("dendrite -version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), strings.TrimPrefix(Version, "v")) {
		t.Errorf("dendrite -version = %q, want %s", out, Version)
	}
	for _, p := range []string{b.GenerateConfig, b.GenerateKeys, b.CreateAccount} {
		if !complete(filepath.Dir(p)) {
			t.Errorf("%s: incomplete cache", p)
		}
	}
}

var callMember = event.Type{Type: "org.matrix.msc3401.call.member", Class: event.StateEventType}

// TestCallStateInRoom: two users, a room, the invitee joins and sets its
// per-device call membership, which the power-level override allows, while
// other state still needs the default 50.
func TestCallStateInRoom(t *testing.T) {
	s := Start(t, Options{})
	if s.ServerName != "localhost" || !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("server %q at %q", s.ServerName, s.URL)
	}
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	if alice.ID != "@alice:localhost" || bob.ID != "@bob:localhost" {
		t.Errorf("user IDs %s, %s", alice.ID, bob.ID)
	}
	if alice.DeviceID == "" || alice.DeviceID == bob.DeviceID {
		t.Errorf("device IDs %q, %q", alice.DeviceID, bob.DeviceID)
	}
	room := s.CreateRoom(t, alice, bob.ID)
	bob.Join(t, room)

	stateKey := "_" + bob.ID.String() + "_" + bob.DeviceID.String() + "_m.call"
	content := map[string]any{
		"application":    "m.call",
		"call_id":        "",
		"scope":          "m.room",
		"device_id":      bob.DeviceID,
		"expires":        14400000,
		"focus_active":   map[string]any{"type": "livekit", "focus_selection": "oldest_membership"},
		"foci_preferred": []any{map[string]any{"type": "livekit", "livekit_service_url": "http://127.0.0.1:1"}},
	}
	if ev := bob.SendState(t, room, callMember, stateKey, content); ev == "" {
		t.Error("no event ID")
	}
	var got map[string]any
	if err := alice.Client.StateEvent(t.Context(), room, callMember, stateKey, &got); err != nil {
		t.Fatalf("alice reads bob's membership: %v", err)
	}
	if got["device_id"] != bob.DeviceID.String() {
		t.Errorf("membership read back = %v", got)
	}
	_, err := bob.Client.SendStateEvent(t.Context(), room, event.StateRoomName, "", map[string]any{"name": "x"})
	if !errors.Is(err, mautrix.MForbidden) {
		t.Errorf("bob sets the room name: err %v, want M_FORBIDDEN", err)
	}

	// A second device of the same account.
	bob2 := bob.Login(t, "BOBPHONE")
	if bob2.ID != bob.ID || bob2.DeviceID != "BOBPHONE" || bob2.AccessToken == bob.AccessToken {
		t.Errorf("second device: %+v", bob2)
	}
}

// TestOpenID: an OpenID token from the client API checks out through the
// federation userinfo endpoint, as a LiveKit token service checks it.
func TestOpenID(t *testing.T) {
	s := Start(t, Options{})
	bob := s.CreateUser(t, "bob")
	tok := bob.OpenIDToken(t)
	if tok.MatrixServerName != "localhost" || tok.AccessToken == "" {
		t.Fatalf("openid token %+v", tok)
	}
	sub, err := s.OpenIDUserInfo(t.Context(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if sub != bob.ID {
		t.Errorf("userinfo sub = %s, want %s", sub, bob.ID)
	}
	_, err = s.OpenIDUserInfo(t.Context(), "not-a-token")
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Errorf("bogus token: %v, want 401", err)
	}
}

// txnRecorder is a minimal appservice endpoint that keeps the events of
// every transaction whose hs_token is right.
type txnRecorder struct {
	hsToken string
	mu      sync.Mutex
	events  []*event.Event
	bad     []string
	changed chan struct{}
}

func (r *txnRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPut || !strings.HasPrefix(req.URL.Path, "/_matrix/app/v1/transactions/") {
		// User and room queries: nobody is known here.
		http.Error(w, `{"errcode":"M_NOT_FOUND"}`, http.StatusNotFound)
		return
	}
	var txn struct {
		Events []*event.Event `json:"events"`
	}
	err := json.NewDecoder(req.Body).Decode(&txn)
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Header.Get("Authorization") != "Bearer "+r.hsToken || err != nil {
		r.bad = append(r.bad, req.URL.Path)
		http.Error(w, `{"errcode":"M_FORBIDDEN"}`, http.StatusForbidden)
		return
	}
	r.events = append(r.events, txn.Events...)
	select {
	case r.changed <- struct{}{}:
	default:
	}
	w.Write([]byte("{}"))
}

// waitFor waits until an event matching ok has arrived.
func (r *txnRecorder) waitFor(ctx context.Context, ok func(*event.Event) bool) (*event.Event, error) {
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if ok(e) {
				r.mu.Unlock()
				return e, nil
			}
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestAppService: a registration written before Start is loaded; the
// as_token acts as the sender and as namespaced users, logs in a device
// with m.login.application_service, and the appservice receives the
// room's call membership in a transaction with the hs_token.
func TestAppService(t *testing.T) {
	reg := appservice.CreateRegistration()
	reg.ID = "focus"
	reg.SenderLocalpart = "focus"
	reg.Namespaces.UserIDs.Register(regexp.MustCompile(`@focus_.*:localhost`), true)
	rec := &txnRecorder{hsToken: reg.ServerToken, changed: make(chan struct{}, 1)}
	hs := httptest.NewServer(rec)
	t.Cleanup(hs.Close) // after Dendrite stops: cleanups run last-in, first-out
	reg.URL = hs.URL
	path := filepath.Join(t.TempDir(), "focus-registration.yaml")
	if err := reg.Save(path); err != nil {
		t.Fatal(err)
	}

	s := Start(t, Options{AppServiceRegistration: []string{path}})
	ctx := t.Context()
	sender := id.NewUserID("focus", "localhost")

	who, err := s.AppServiceClient(t, reg.AppToken, sender).Whoami(ctx)
	if err != nil || who.UserID != sender {
		t.Fatalf("whoami as the sender: %+v, %v", who, err)
	}
	bot := s.RegisterAppServiceUser(t, reg.AppToken, "focus_bot")
	who, err = s.AppServiceClient(t, reg.AppToken, bot).Whoami(ctx)
	if err != nil || who.UserID != bot {
		t.Fatalf("whoami as %s: %+v, %v", bot, who, err)
	}
	alice := s.CreateUser(t, "alice")
	if _, err := s.AppServiceClient(t, reg.AppToken, alice.ID).Whoami(ctx); !errors.Is(err, mautrix.MForbidden) {
		t.Errorf("as_token masquerading outside its namespace: %v, want M_FORBIDDEN", err)
	}

	// The login a focus uses for its own device when the homeserver does
	// not push to-device messages to appservices.
	dev := s.Client(t, "", reg.AppToken)
	login, err := dev.Login(ctx, &mautrix.ReqLogin{
		Type:             mautrix.AuthTypeAppservice,
		Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "focus"},
		DeviceID:         "FOCUSDEV",
		StoreCredentials: true,
	})
	if err != nil {
		t.Fatalf("m.login.application_service: %v", err)
	}
	who, err = dev.Whoami(ctx)
	if err != nil || who.UserID != sender || who.DeviceID != "FOCUSDEV" || login.AccessToken == reg.AppToken {
		t.Errorf("device login: %+v; whoami %+v, %v", login, who, err)
	}

	room := s.CreateRoom(t, alice, sender)
	if _, err := s.AppServiceClient(t, reg.AppToken, sender).JoinRoomByID(ctx, room); err != nil {
		t.Fatalf("the appservice joins: %v", err)
	}
	stateKey := "_" + alice.ID.String() + "_" + alice.DeviceID.String() + "_m.call"
	alice.SendState(t, room, callMember, stateKey, map[string]any{"application": "m.call", "device_id": alice.DeviceID})

	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ev, err := rec.waitFor(wctx, func(e *event.Event) bool {
		return e.Type.Type == callMember.Type && e.StateKey != nil && *e.StateKey == stateKey
	})
	if err != nil {
		t.Fatalf("no transaction carried alice's membership: %v", err)
	}
	if ev.RoomID != room || ev.Sender != alice.ID {
		t.Errorf("membership event %+v", ev)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.bad) > 0 {
		t.Errorf("transactions without the hs_token: %v", rec.bad)
	}
}

// TestStop: Stop ends the process and is safe to repeat.
func TestStop(t *testing.T) {
	s := Start(t, Options{})
	s.Stop()
	s.Stop()
	select {
	case <-s.exited:
	default:
		t.Fatal("dendrite still runs after Stop")
	}
	if s.answers(t.Context()) {
		t.Error("dendrite still answers after Stop")
	}
}

func TestSetGet(t *testing.T) {
	cfg := map[string]any{"a": map[string]any{"b": 1}, "s": "x"}
	tests := []struct {
		path    string
		value   any
		wantErr bool
	}{
		{"a.b", 2, false},
		{"a.c.d", true, false},
		{"top", []any{}, false},
		{"s.x", 1, true},
	}
	for _, tt := range tests {
		err := set(cfg, tt.path, tt.value)
		if (err != nil) != tt.wantErr {
			t.Errorf("set %s: %v", tt.path, err)
			continue
		}
		if err == nil {
			if got := get(cfg, tt.path); !equalJSON(got, tt.value) {
				t.Errorf("get %s = %v, want %v", tt.path, got, tt.value)
			}
		}
	}
	if got := get(cfg, "a.missing.x"); got != nil {
		t.Errorf("get a.missing.x = %v", got)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(t.Context(), path, func() { t.Error("first locker waited") })
	if err != nil {
		t.Fatal(err)
	}
	if !realLock {
		unlock()
		t.Skip("no flock here")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	waited := false
	if _, err := lockFile(ctx, path, func() { waited = true }); !errors.Is(err, context.DeadlineExceeded) || !waited {
		t.Errorf("second locker while held: waited %v, err %v", waited, err)
	}
	unlock()
	unlock2, err := lockFile(t.Context(), path, func() { t.Error("waited after unlock") })
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
}
