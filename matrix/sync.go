package matrix

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Not every homeserver pushes to-device messages to appservices (Dendrite
// does not), so the bot logs its own device in and runs /sync on it. The
// to-device messages it gets there are the same ones a homeserver that
// does push them sends in transactions; Transport.toDevice delivers each
// once.

// maxSyncSize bounds a /sync response.
const maxSyncSize = 64 << 20

// syncTimelineLimit is how many timeline events of the filtered types one
// /sync returns per room.
const syncTimelineLimit = 100

// syncLoop runs /sync on the device cli is logged in as until ctx ends,
// logging in again when the homeserver drops the device's token.
func (t *Transport) syncLoop(ctx context.Context, cli *mautrix.Client) {
	lo, hi := t.cfg.backoff()
	wait := lo
	var (
		filter string
		failed bool
	)
	for ctx.Err() == nil {
		var err error
		what := "sync the bot device"
		switch {
		case cli == nil:
			what = "log in the bot device " + string(t.cfg.DeviceID)
			cli, err = t.login(ctx)
		case filter == "":
			what = "create the /sync filter"
			filter, err = t.createFilter(ctx, cli)
		default:
			err = t.syncOnce(ctx, cli, filter)
		}
		if err == nil {
			if failed && filter != "" {
				t.log.Info().Str("homeserver", t.cfg.HomeserverURL).Msg("matrix: syncing again")
			}
			failed = false
			wait = lo
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, mautrix.MUnknownToken) && cli != nil && what != "log in the bot device "+string(t.cfg.DeviceID) {
			// The device was logged out (or its token revoked): log in again.
			t.log.Warn().Err(err).Msg("matrix: the bot device's access token was refused; logging in again")
			cli, filter = nil, ""
			t.forgetDevice()
			continue
		}
		failed = true
		t.logHomeserverError(what, err, wait)
		if !sleep(ctx, wait) {
			return
		}
		wait = min(2*wait, hi)
	}
}

// login returns a client for the bot's device: the saved access token if
// the homeserver still accepts it, or a new one from an
// m.login.application_service login with the as_token.
func (t *Transport) login(ctx context.Context) (*mautrix.Client, error) {
	hs := t.cfg.HomeserverURL
	if token, ok := t.store.Device(hs, t.user, t.cfg.DeviceID); ok {
		cli, err := t.newClient(token)
		if err != nil {
			return nil, err
		}
		cli.DeviceID = t.cfg.DeviceID
		cctx, cancel := context.WithTimeout(ctx, homeserverCallWindow)
		_, err = cli.Whoami(cctx)
		cancel()
		if err == nil {
			t.setDevice(cli)
			return cli, nil
		}
		if !errors.Is(err, mautrix.MUnknownToken) {
			return nil, err
		}
		t.log.Info().Msg("matrix: the saved device token is no longer valid; logging in again")
	}
	asCli, err := t.newClient(t.cfg.ASToken)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, homeserverCallWindow)
	defer cancel()
	resp, err := asCli.Login(cctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypeAppservice,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: t.cfg.BotLocalpart},
		DeviceID:                 t.cfg.DeviceID,
		InitialDeviceDisplayName: "focus SFU",
	})
	if err != nil {
		return nil, err
	}
	if resp.DeviceID != t.cfg.DeviceID {
		return nil, fmt.Errorf("the homeserver logged in device %q, not %q", resp.DeviceID, t.cfg.DeviceID)
	}
	if err := t.store.SaveDevice(hs, t.user, t.cfg.DeviceID, resp.AccessToken); err != nil {
		return nil, err
	}
	cli, err := t.newClient(resp.AccessToken)
	if err != nil {
		return nil, err
	}
	cli.DeviceID = t.cfg.DeviceID
	t.setDevice(cli)
	t.log.Info().Str("device", string(t.cfg.DeviceID)).Msg("matrix: logged in the bot device")
	return cli, nil
}

// setDevice makes cli the client SendToDevice uses.
func (t *Transport) setDevice(cli *mautrix.Client) {
	t.loginMu.Lock()
	defer t.loginMu.Unlock()
	t.dev.Store(cli)
	select {
	case <-t.loggedIn:
	default:
		close(t.loggedIn)
	}
}

// forgetDevice drops a device token the homeserver refused.
func (t *Transport) forgetDevice() {
	if err := t.store.SaveDevice("", "", "", ""); err != nil {
		t.log.Warn().Err(err).Msg("matrix: cannot clear the saved device token")
	}
}

// createFilter uploads the /sync filter: no presence or account data, and
// in rooms only the state types RoomEvent carries.
func (t *Transport) createFilter(ctx context.Context, cli *mautrix.Client) (string, error) {
	none := &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}}
	types := roomEventTypes()
	f := &mautrix.Filter{
		AccountData: none,
		Presence:    none,
		Room: &mautrix.RoomFilter{
			AccountData: none,
			Ephemeral:   none,
			State:       &mautrix.FilterPart{Types: types},
			Timeline:    &mautrix.FilterPart{Types: types, Limit: syncTimelineLimit},
		},
	}
	cctx, cancel := context.WithTimeout(ctx, homeserverCallWindow)
	defer cancel()
	resp, err := cli.CreateFilter(cctx, f)
	if err != nil {
		return "", err
	}
	return resp.FilterID, nil
}

// syncOnce runs one /sync, delivers what it brings and saves its
// next_batch. The token is saved after the delivery, so a crash in
// between repeats the batch rather than losing it.
func (t *Transport) syncOnce(ctx context.Context, cli *mautrix.Client, filter string) error {
	since := t.store.SyncToken(t.user, t.cfg.DeviceID)
	timeout := t.cfg.syncTimeout()
	query := map[string]string{"filter": filter, "set_presence": "offline", "timeout": "0"}
	if since != "" {
		query["since"] = since
		query["timeout"] = strconv.FormatInt(timeout.Milliseconds(), 10)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout+homeserverCallWindow)
	defer cancel()
	var resp syncResponse
	_, err := cli.MakeFullRequest(cctx, mautrix.FullRequest{
		Method:            http.MethodGet,
		URL:               cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, query),
		Handler:           syncHandler(&resp),
		MaxAttempts:       1,
		ResponseSizeLimit: maxSyncSize,
	})
	if err != nil {
		return err
	}
	if resp.NextBatch == "" {
		return errors.New("/sync answered without next_batch")
	}
	t.mu.Lock()
	t.handleSync(ctx, &resp, since == "")
	t.mu.Unlock()
	return t.store.SaveSyncToken(t.user, t.cfg.DeviceID, resp.NextBatch)
}

// syncHandler decodes a /sync response with parseSync instead of the
// strict decoding mautrix does, so that one odd event cannot stop the loop
// at the same token forever.
func syncHandler(out *syncResponse) mautrix.ClientResponseHandler {
	// mautrix calls it for 2xx answers only; errors are parsed before.
	return func(_ *http.Request, res *http.Response, _ any, limit int64) ([]byte, error) {
		body, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
		if err != nil {
			return nil, fmt.Errorf("/sync response: %w", err)
		}
		if int64(len(body)) > limit {
			return nil, fmt.Errorf("/sync response larger than %d bytes", limit)
		}
		parsed, err := parseSync(body)
		if err != nil {
			return body, err
		}
		*out = *parsed
		return body, nil
	}
}

// syncResponse is the part of a /sync response the Transport uses.
type syncResponse struct {
	NextBatch   string
	Join        map[id.RoomID]syncRoom
	Invite      map[id.RoomID][]*event.Event // stripped invite state
	Leave       map[id.RoomID]syncRoom
	ToDevice    []*event.Event
	OTKCounts   *mautrix.OTKCount
	Fallback    []id.KeyAlgorithm
	DeviceLists *mautrix.DeviceLists
	skipped     []error
}

type syncRoom struct {
	State    []*event.Event
	Timeline []*event.Event
}

type wireSync struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join   map[id.RoomID]wireSyncRoom `json:"join"`
		Leave  map[id.RoomID]wireSyncRoom `json:"leave"`
		Invite map[id.RoomID]struct {
			InviteState wireEvents `json:"invite_state"`
		} `json:"invite"`
	} `json:"rooms"`
	ToDevice     wireEvents      `json:"to_device"`
	OTKCounts    json.RawMessage `json:"device_one_time_keys_count"`
	FallbackKeys json.RawMessage `json:"device_unused_fallback_key_types"`
	DeviceLists  json.RawMessage `json:"device_lists"`
}

type wireSyncRoom struct {
	State    wireEvents `json:"state"`
	Timeline wireEvents `json:"timeline"`
}

type wireEvents struct {
	Events []json.RawMessage `json:"events"`
}

// parseSync decodes a /sync response body, skipping malformed events.
func parseSync(body []byte) (*syncResponse, error) {
	var w wireSync
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("/sync response: %w", err)
	}
	s := &syncResponse{NextBatch: w.NextBatch, Join: map[id.RoomID]syncRoom{}, Leave: map[id.RoomID]syncRoom{}, Invite: map[id.RoomID][]*event.Event{}}
	room := func(roomID id.RoomID, r wireSyncRoom) syncRoom {
		sr := syncRoom{
			State:    parseEvents(r.State.Events, event.StateEventType, "state", &s.skipped),
			Timeline: parseEvents(r.Timeline.Events, event.UnknownEventType, "timeline", &s.skipped),
		}
		for _, evt := range sr.State {
			evt.RoomID = roomID // /sync leaves it out
		}
		return sr
	}
	for roomID, r := range w.Rooms.Join {
		s.Join[roomID] = room(roomID, withRoomID(roomID, r))
	}
	for roomID, r := range w.Rooms.Leave {
		s.Leave[roomID] = room(roomID, withRoomID(roomID, r))
	}
	for roomID, r := range w.Rooms.Invite {
		evts := parseEvents(r.InviteState.Events, event.StateEventType, "invite_state", &s.skipped)
		for _, evt := range evts {
			evt.RoomID = roomID
		}
		s.Invite[roomID] = evts
	}
	s.ToDevice = parseEvents(w.ToDevice.Events, event.ToDeviceEventType, "to_device", &s.skipped)
	decodeSection(w.OTKCounts, &s.OTKCounts, "device_one_time_keys_count", &s.skipped)
	decodeSection(w.FallbackKeys, &s.Fallback, "device_unused_fallback_key_types", &s.skipped)
	decodeSection(w.DeviceLists, &s.DeviceLists, "device_lists", &s.skipped)
	return s, nil
}

// withRoomID puts the room ID into timeline events, which /sync sends
// without it, so they parse as room events.
func withRoomID(roomID id.RoomID, r wireSyncRoom) wireSyncRoom {
	quoted, _ := json.Marshal(roomID)
	add := func(raws []json.RawMessage) []json.RawMessage {
		out := make([]json.RawMessage, len(raws))
		for i, raw := range raws {
			trimmed := bytes.TrimSpace(raw)
			if len(trimmed) < 2 || trimmed[0] != '{' {
				out[i] = raw
				continue
			}
			var probe struct {
				RoomID *string `json:"room_id"`
			}
			if json.Unmarshal(trimmed, &probe) == nil && probe.RoomID != nil {
				out[i] = raw
				continue
			}
			// {"room_id":"!r",<the rest>}
			var b bytes.Buffer
			b.WriteString(`{"room_id":`)
			b.Write(quoted)
			if rest := bytes.TrimSpace(trimmed[1:]); len(rest) > 0 && rest[0] != '}' {
				b.WriteByte(',')
			}
			b.Write(trimmed[1:])
			out[i] = b.Bytes()
		}
		return out
	}
	r.Timeline.Events = add(r.Timeline.Events)
	r.State.Events = add(r.State.Events)
	return r
}

// handleSync delivers one /sync response: room state and timeline, then
// invites and leaves, then to-device messages. On the first /sync (no
// since token) the state sections are skipped: Run has loaded the rooms'
// full state already. Called with t.mu held.
func (t *Transport) handleSync(ctx context.Context, s *syncResponse, initial bool) {
	for _, err := range s.skipped {
		t.log.Warn().Err(err).Msg("matrix: skipping a malformed part of a /sync response")
	}
	for roomID, r := range s.Join {
		if !t.joined[roomID] {
			if err := t.cfg.Policy.AllowRoom(roomID); err != nil {
				continue
			}
			t.joinedRoom(ctx, roomID)
		}
		if !initial {
			for _, evt := range r.State {
				t.roomEvent(ctx, evt)
			}
		}
		for _, evt := range r.Timeline {
			t.roomEvent(ctx, evt)
		}
	}
	for roomID, stripped := range s.Invite {
		for _, evt := range stripped {
			if evt.Type.Type == event.StateMember.Type && evt.GetStateKey() == string(t.user) &&
				membershipOf(evt) == event.MembershipInvite {
				t.invited(ctx, roomID, evt.Sender)
			}
		}
	}
	for roomID, r := range s.Leave {
		for _, evt := range r.State {
			t.roomEvent(ctx, evt)
		}
		for _, evt := range r.Timeline {
			t.roomEvent(ctx, evt)
		}
		if t.joined[roomID] {
			t.leftRoom(ctx, roomID, nil)
		}
	}
	for _, evt := range s.ToDevice {
		t.toDevice(ctx, evt)
	}
	if s.OTKCounts != nil || s.Fallback != nil {
		t.keyCounts(ctx, s.OTKCounts, s.Fallback)
	}
	if s.DeviceLists != nil && t.cfg.Crypto != nil {
		t.cfg.Crypto.DeviceLists(ctx, *s.DeviceLists)
	}
}

// toDeviceKey identifies a to-device message for dedupe: by sender,
// sender device, call_id and seq for call signalling, and by sender, type
// and a hash of the content otherwise (an encrypted message carries the
// same ciphertext on both paths).
func toDeviceKey(evt *event.Event) string {
	if k := callKey(evt); k != "" {
		return k
	}
	sum := sha256.Sum256(canonicalJSON(evt.Content.VeryRaw))
	return "raw\x00" + string(evt.Sender) + "\x00" + evt.Type.Type + "\x00" + hex.EncodeToString(sum[:])
}

// callKey is the (sender, sender device, call_id, seq) key of a call
// signalling message, or "" when the content has no call_id and seq.
func callKey(evt *event.Event) string {
	var c struct {
		CallID   string          `json:"call_id"`
		Seq      json.RawMessage `json:"seq"`
		DeviceID string          `json:"device_id"`
		PartyID  string          `json:"party_id"`
	}
	if json.Unmarshal(evt.Content.VeryRaw, &c) != nil || c.CallID == "" || len(c.Seq) == 0 || string(c.Seq) == "null" {
		return ""
	}
	device := c.DeviceID
	if device == "" {
		device = c.PartyID
	}
	return "call\x00" + string(evt.Sender) + "\x00" + device + "\x00" + c.CallID + "\x00" + string(c.Seq)
}

// canonicalJSON re-encodes raw with sorted keys, so that the same content
// sent by two paths hashes the same; raw itself when it is not JSON.
func canonicalJSON(raw []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return raw
	}
	out, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return out
}
