package matrix

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Body limits of the appservice API.
const (
	maxTransactionSize = 16 << 20
	maxSmallBodySize   = 64 << 10
)

// Handler serves the appservice API the homeserver calls:
//
//	PUT  /_matrix/app/v1/transactions/{txnId}  (and legacy /transactions/{txnId})
//	POST /_matrix/app/v1/ping
//	GET  /_matrix/app/v1/users/{userId}        (and legacy /users/{userId})
//	GET  /_matrix/app/v1/rooms/{roomAlias}     (and legacy /rooms/{roomAlias})
//
// Every request must carry the hs_token, as Authorization: Bearer or the
// legacy access_token query parameter; a missing or wrong one is 403
// M_FORBIDDEN. Mount it on its own listener (matrix.appservice_listen).
func (t *Transport) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, prefix := range []string{"/_matrix/app/v1", ""} {
		mux.HandleFunc("PUT "+prefix+"/transactions/{txnID}", t.authorized(t.putTransaction))
		mux.HandleFunc("GET "+prefix+"/users/{userID}", t.authorized(t.getUser))
		mux.HandleFunc("GET "+prefix+"/rooms/{alias}", t.authorized(t.getRoom))
	}
	mux.HandleFunc("POST /_matrix/app/v1/ping", t.authorized(t.postPing))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mautrix.MUnrecognized.WithMessage("unknown appservice endpoint").Write(w)
	})
	return mux
}

// authorized wraps h with the hs_token check. The spec's 401 for a missing
// token is answered 403 as well: either way the caller is not our
// homeserver.
func (t *Transport) authorized(h http.HandlerFunc) http.HandlerFunc {
	want := []byte(t.cfg.HSToken)
	return func(w http.ResponseWriter, r *http.Request) {
		token, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !found || token == "" {
			token = r.URL.Query().Get("access_token")
		}
		var problem string
		switch {
		case token == "":
			problem = "missing hs_token: send Authorization: Bearer <hs_token>"
		case subtle.ConstantTimeCompare([]byte(token), want) != 1:
			problem = "wrong hs_token: it is not the one in this focus's registration"
		default:
			h(w, r)
			return
		}
		t.log.Warn().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).
			Msg("matrix: refused an appservice request: " + problem + "; is the homeserver using the same registration file as the focus?")
		mautrix.MForbidden.WithMessage("%s", problem).Write(w)
	}
}

// putTransaction handles one transaction. It is processed once: its ID is
// recorded in the data directory, after its events are delivered and
// before the 200, and a repeat of a recorded ID is answered 200 at once.
func (t *Transport) putTransaction(w http.ResponseWriter, r *http.Request) {
	txnID := r.PathValue("txnID")
	if !validTxnID(txnID) {
		mautrix.MInvalidParam.WithMessage("transaction ID must be 1-%d printable characters", maxTxnIDLength).Write(w)
		return
	}
	log := t.log.With().Str("txn", txnID).Logger()
	if t.store.TxnProcessed(txnID) {
		log.Debug().Msg("matrix: transaction already processed")
		writeEmpty(w)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTransactionSize))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			mautrix.MTooLarge.WithMessage("transaction larger than %d bytes", maxTransactionSize).Write(w)
			return
		}
		mautrix.MNotJSON.WithMessage("cannot read the body: %v", err).Write(w)
		return
	}
	txn, err := parseTransaction(body)
	if err != nil {
		log.Warn().Err(err).Msg("matrix: refused a malformed transaction")
		mautrix.MBadJSON.WithMessage("%v", err).Write(w)
		return
	}
	for _, e := range txn.skipped {
		log.Warn().Err(e).Msg("matrix: skipping a malformed event in a transaction")
	}
	ctx, ok := t.waitReady(r.Context())
	if !ok {
		mautrix.MUnknown.WithStatus(http.StatusServiceUnavailable).
			WithMessage("the focus is not connected to its homeserver yet; retry").Write(w)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.store.TxnProcessed(txnID) { // a concurrent retry got here first
		writeEmpty(w)
		return
	}
	t.handleTransaction(ctx, txn, log)
	if err := t.store.MarkTxn(txnID); err != nil {
		log.Error().Err(err).Msg("matrix: cannot record a processed transaction; the homeserver will send it again")
		mautrix.MUnknown.WithMessage("cannot record the transaction").Write(w)
		return
	}
	writeEmpty(w)
}

// waitReady waits until Run has loaded the joined rooms, and returns Run's
// context. It fails when Run is not running or the request gives up.
func (t *Transport) waitReady(req context.Context) (context.Context, bool) {
	timer := time.NewTimer(readyWait)
	defer timer.Stop()
	select {
	case <-t.ready:
	case <-t.done:
		return nil, false
	case <-req.Done():
		return nil, false
	case <-timer.C:
		return nil, false
	}
	t.mu.Lock()
	ctx := t.runCtx
	t.mu.Unlock()
	if ctx.Err() != nil {
		return nil, false
	}
	return ctx, true
}

// handleTransaction delivers a transaction's room events, then its
// to-device events. Called with t.mu held.
func (t *Transport) handleTransaction(ctx context.Context, txn *transaction, log zerolog.Logger) {
	log.Debug().Int("events", len(txn.events)).Int("to_device", len(txn.toDevice)).
		Int("ephemeral", len(txn.ephemeral)).Msg("matrix: transaction")
	for _, evt := range txn.events {
		t.roomEvent(ctx, evt)
	}
	for _, evt := range txn.toDevice {
		// A homeserver pushes to-device messages for every device in the
		// namespace; only the bot's device is ours.
		if (evt.ToUserID != "" && evt.ToUserID != t.user) || (evt.ToDeviceID != "" && evt.ToDeviceID != t.cfg.DeviceID) {
			continue
		}
		t.toDevice(ctx, evt)
	}
	if c, ok := txn.otkCounts[t.user][t.cfg.DeviceID]; ok {
		t.keyCounts(ctx, &c, nil)
	}
	if fb, ok := txn.fallbackKeys[t.user][t.cfg.DeviceID]; ok {
		t.keyCounts(ctx, nil, fb)
	}
	if txn.deviceLists != nil && t.cfg.Crypto != nil {
		t.cfg.Crypto.DeviceLists(ctx, *txn.deviceLists)
	}
}

func (t *Transport) getUser(w http.ResponseWriter, r *http.Request) {
	if id.UserID(r.PathValue("userID")) == t.user {
		writeEmpty(w)
		return
	}
	mautrix.MNotFound.WithMessage("this appservice has no such user").Write(w)
}

func (t *Transport) getRoom(w http.ResponseWriter, _ *http.Request) {
	mautrix.MNotFound.WithMessage("this appservice has no room aliases").Write(w)
}

func (t *Transport) postPing(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSmallBodySize))
	if err != nil {
		mautrix.MNotJSON.WithMessage("cannot read the body").Write(w)
		return
	}
	var ping struct {
		TxnID string `json:"transaction_id"`
	}
	if len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &ping) != nil {
		mautrix.MNotJSON.WithMessage("the body is not a JSON object").Write(w)
		return
	}
	t.log.Debug().Str("txn", ping.TxnID).Msg("matrix: ping from the homeserver")
	writeEmpty(w)
}

func writeEmpty(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("{}"))
}

// transaction is a parsed appservice transaction. Stable keys win over
// their unstable MSC2409/MSC3202 forms when both are present.
type transaction struct {
	events       []*event.Event // room events, in order
	ephemeral    []*event.Event
	toDevice     []*event.Event
	deviceLists  *mautrix.DeviceLists
	otkCounts    appservice.OTKCountMap
	fallbackKeys appservice.FallbackKeyMap
	// skipped says why events or sections were left out. One bad event
	// must not make the homeserver retry the whole transaction forever.
	skipped []error
}

// wireTransaction is the body, with every event kept raw so that each is
// decoded on its own.
type wireTransaction struct {
	Events           []json.RawMessage `json:"events"`
	Ephemeral        []json.RawMessage `json:"ephemeral"`
	MSC2409Ephemeral []json.RawMessage `json:"de.sorunome.msc2409.ephemeral"`
	ToDevice         []json.RawMessage `json:"to_device"`
	MSC2409ToDevice  []json.RawMessage `json:"de.sorunome.msc2409.to_device"`

	DeviceLists         json.RawMessage `json:"device_lists"`
	MSC3202DeviceLists  json.RawMessage `json:"org.matrix.msc3202.device_lists"`
	OTKCounts           json.RawMessage `json:"device_one_time_keys_count"`
	MSC3202OTKCounts    json.RawMessage `json:"org.matrix.msc3202.device_one_time_keys_count"`
	FallbackKeys        json.RawMessage `json:"device_unused_fallback_key_types"`
	MSC3202FallbackKeys json.RawMessage `json:"org.matrix.msc3202.device_unused_fallback_key_types"`
}

// parseTransaction decodes a transaction body. It fails only when the
// body is not a JSON object with list-valued event sections; malformed
// single events and extension sections are skipped and reported in
// skipped.
func parseTransaction(body []byte) (*transaction, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("the transaction is not a JSON object")
	}
	var w wireTransaction
	if err := json.Unmarshal(trimmed, &w); err != nil {
		return nil, fmt.Errorf("the transaction is not valid: %w", err)
	}
	txn := &transaction{}
	txn.events = parseEvents(w.Events, event.UnknownEventType, "events", &txn.skipped)
	txn.ephemeral = parseEvents(either(w.Ephemeral, w.MSC2409Ephemeral), event.EphemeralEventType, "ephemeral", &txn.skipped)
	txn.toDevice = parseEvents(either(w.ToDevice, w.MSC2409ToDevice), event.ToDeviceEventType, "to_device", &txn.skipped)
	decodeSection(eitherRaw(w.DeviceLists, w.MSC3202DeviceLists), &txn.deviceLists, "device_lists", &txn.skipped)
	decodeSection(eitherRaw(w.OTKCounts, w.MSC3202OTKCounts), &txn.otkCounts, "device_one_time_keys_count", &txn.skipped)
	decodeSection(eitherRaw(w.FallbackKeys, w.MSC3202FallbackKeys), &txn.fallbackKeys, "device_unused_fallback_key_types", &txn.skipped)
	return txn, nil
}

func either(stable, unstable []json.RawMessage) []json.RawMessage {
	if stable != nil {
		return stable
	}
	return unstable
}

func eitherRaw(stable, unstable json.RawMessage) json.RawMessage {
	if len(stable) > 0 && string(stable) != "null" {
		return stable
	}
	return unstable
}

// decodeSection decodes an optional section into v, skipping it when
// malformed.
func decodeSection[T any](raw json.RawMessage, v *T, name string, skipped *[]error) {
	if len(raw) == 0 || string(raw) == "null" {
		return
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var zero T
		*v = zero
		*skipped = append(*skipped, fmt.Errorf("%s: %w", name, err))
	}
}

// parseEvents decodes each raw event on its own. class is the class of
// the section (UnknownEventType for room events: state or message by
// state_key). Events without the fields their class needs are skipped.
func parseEvents(raws []json.RawMessage, class event.TypeClass, section string, skipped *[]error) []*event.Event {
	evts := make([]*event.Event, 0, len(raws))
	for i, raw := range raws {
		evt, err := parseEvent(raw, class)
		if err != nil {
			*skipped = append(*skipped, fmt.Errorf("%s[%d]: %w", section, i, err))
			continue
		}
		evts = append(evts, evt)
	}
	return evts
}

func parseEvent(raw json.RawMessage, class event.TypeClass) (*event.Event, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var evt event.Event
	if err := json.Unmarshal(trimmed, &evt); err != nil {
		return nil, err
	}
	if evt.Type.Type == "" {
		return nil, errors.New("no type")
	}
	if class != event.EphemeralEventType && evt.Sender == "" {
		return nil, errors.New("no sender")
	}
	if evt.Content.Raw == nil {
		evt.Content.Raw = map[string]any{}
	}
	switch {
	case class == event.UnknownEventType && evt.RoomID == "":
		return nil, errors.New("a room event without room_id")
	case class == event.UnknownEventType && evt.StateKey != nil:
		evt.Type.Class = event.StateEventType
		evt.Mautrix.EventSource = event.SourceTimeline
	case class == event.UnknownEventType:
		evt.Type.Class = event.MessageEventType
		evt.Mautrix.EventSource = event.SourceTimeline
	case class == event.ToDeviceEventType:
		evt.Type.Class = class
		evt.Mautrix.EventSource = event.SourceToDevice
	default:
		evt.Type.Class = class
		evt.Mautrix.EventSource = event.SourceEphemeral
	}
	evt.Mautrix.ReceivedAt = time.Now()
	return &evt, nil
}
