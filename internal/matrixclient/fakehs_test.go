package matrixclient

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

// fakeHS is the part of a homeserver the client uses — filters, /sync
// with to-device messages, sendToDevice, room state — so that the client
// can be tested without one. Devices with a handler (the fake focus) get
// their to-device messages by call instead of by /sync.
type fakeHS struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	tokens   map[string]deviceKey
	inbox    map[deviceKey][]json.RawMessage
	kick     map[deviceKey]chan struct{}
	handlers map[deviceKey]func(sender id.UserID, typ string, content json.RawMessage)
	state    []fakeState
	batch    int
}

type deviceKey struct {
	user   id.UserID
	device id.DeviceID
}

type fakeState struct {
	room     id.RoomID
	typ, key string
	content  json.RawMessage
}

func newFakeHS(t *testing.T) *fakeHS {
	hs := &fakeHS{
		t: t, tokens: map[string]deviceKey{}, inbox: map[deviceKey][]json.RawMessage{},
		kick: map[deviceKey]chan struct{}{}, handlers: map[deviceKey]func(id.UserID, string, json.RawMessage){},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_matrix/client/v3/user/{user}/filter", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := hs.auth(w, r); ok {
			writeJSON(w, map[string]string{"filter_id": "1"})
		}
	})
	mux.HandleFunc("GET /_matrix/client/v3/sync", hs.sync)
	mux.HandleFunc("PUT /_matrix/client/v3/sendToDevice/{type}/{txn}", hs.sendToDevice)
	mux.HandleFunc("PUT /_matrix/client/v3/rooms/{room}/state/{type}/{key...}", hs.putState)
	hs.srv = httptest.NewServer(mux)
	t.Cleanup(hs.srv.Close)
	return hs
}

// user makes a device with an access token.
func (hs *fakeHS) user(u id.UserID, d id.DeviceID) User {
	tok := "tok_" + string(d)
	hs.mu.Lock()
	hs.tokens[tok] = deviceKey{u, d}
	hs.mu.Unlock()
	return User{UserID: u, DeviceID: d, AccessToken: tok}
}

// serve delivers to-device messages for one device to h.
func (hs *fakeHS) serve(k deviceKey, h func(sender id.UserID, typ string, content json.RawMessage)) {
	hs.mu.Lock()
	hs.handlers[k] = h
	hs.mu.Unlock()
}

func (hs *fakeHS) auth(w http.ResponseWriter, r *http.Request) (deviceKey, bool) {
	hs.mu.Lock()
	k, ok := hs.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	hs.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		writeJSON(w, map[string]string{"errcode": "M_UNKNOWN_TOKEN", "error": "bad token"})
	}
	return k, ok
}

func (hs *fakeHS) sync(w http.ResponseWriter, r *http.Request) {
	k, ok := hs.auth(w, r)
	if !ok {
		return
	}
	ms, _ := strconv.Atoi(r.URL.Query().Get("timeout"))
	deadline := time.After(time.Duration(ms) * time.Millisecond)
	for {
		hs.mu.Lock()
		evts := hs.inbox[k]
		hs.inbox[k] = nil
		kick := hs.kick[k]
		if kick == nil {
			kick = make(chan struct{}, 1)
			hs.kick[k] = kick
		}
		hs.batch++
		next := strconv.Itoa(hs.batch)
		hs.mu.Unlock()
		if len(evts) > 0 {
			writeJSON(w, map[string]any{"next_batch": next, "to_device": map[string]any{"events": evts}})
			return
		}
		select {
		case <-kick:
		case <-deadline:
			writeJSON(w, map[string]any{"next_batch": next})
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (hs *fakeHS) sendToDevice(w http.ResponseWriter, r *http.Request) {
	k, ok := hs.auth(w, r)
	if !ok {
		return
	}
	var body struct {
		Messages map[id.UserID]map[id.DeviceID]json.RawMessage `json:"messages"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for u, devs := range body.Messages {
		for d, content := range devs {
			hs.deliver(k.user, deviceKey{u, d}, r.PathValue("type"), content)
		}
	}
	writeJSON(w, struct{}{})
}

// deliver hands one to-device message to its device: to a handler at
// once, or to the device's next /sync.
func (hs *fakeHS) deliver(sender id.UserID, to deviceKey, typ string, content json.RawMessage) {
	hs.mu.Lock()
	h := hs.handlers[to]
	if h == nil {
		evt, _ := json.Marshal(map[string]any{"type": typ, "sender": sender, "content": content})
		hs.inbox[to] = append(hs.inbox[to], evt)
		if kick := hs.kick[to]; kick != nil {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}
	hs.mu.Unlock()
	if h != nil {
		h(sender, typ, content)
	}
}

func (hs *fakeHS) putState(w http.ResponseWriter, r *http.Request) {
	if _, ok := hs.auth(w, r); !ok {
		return
	}
	var content json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&content); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	hs.mu.Lock()
	hs.state = append(hs.state, fakeState{id.RoomID(r.PathValue("room")), r.PathValue("type"), r.PathValue("key"), content})
	n := len(hs.state)
	hs.mu.Unlock()
	writeJSON(w, map[string]string{"event_id": "$" + strconv.Itoa(n)})
}

func (hs *fakeHS) states() []fakeState {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]fakeState(nil), hs.state...)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
