package matrix

// Call membership: which devices are in which call of which room, read
// from room state. Three content shapes are accepted under both event
// types (m.call.member and org.matrix.msc3401.call.member), told apart by
// their keys:
//
//   - legacy MSC3401, one event per user (state key = user ID):
//     {"m.calls":[{"m.call_id":"…","m.devices":[{"device_id","session_id",
//     "expires_ts", "m.foci.active", "m.foci.preferred",
//     "org.matrix.msc3898.foci.active", "org.matrix.msc3898.foci.preferred",
//     "feeds"}]}]};
//   - MatrixRTC's interim list, one event per user:
//     {"memberships":[{"application","call_id","device_id","expires" or
//     "expires_ts","created_ts","foci_active","membershipID"}]};
//   - per device (state key `_@user:hs_DEVICE_m.call`, `_@user:hs_DEVICE`
//     or `@user:hs_DEVICE`): {"application":"m.call","call_id","scope",
//     "device_id","expires","created_ts","focus_active","foci_preferred"}.
//
// Empty content ({}, or a redacted event) means every device of that
// state key left. Foci may be objects {"type","user_id","device_id",
// "livekit_service_url"} or strings "@user:hs" / "@user:hs|DEVICE"; an
// object or string with a user ID and no type is an MSC3898 focus.
//
// Each state key is a slot that its newest event replaces whole; a
// device's membership is the newest unexpired entry for it over all the
// slots of the room. m.room.member leave, kick or ban of a user drops the
// user's slots, and their later call-member events are ignored until
// they join again.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Call membership state event types.
var (
	StateCallMember         = event.Type{Type: "m.call.member", Class: event.StateEventType}
	StateCallMemberUnstable = event.Type{Type: "org.matrix.msc3401.call.member", Class: event.StateEventType}
)

// Focus types in membership foci.
const (
	FocusTypeMSC3898 = "org.matrix.msc3898"
	FocusTypeLivekit = "livekit"
)

// Bounds on membership content.
const (
	maxFociPerList = 16
	// expiries past this (year ~2255) are treated as "never"; it keeps
	// time arithmetic far from overflow.
	maxExpiryMillis = 1 << 43
)

// FocusInfo is one entry of a member's foci (foci_preferred, focus_active,
// m.foci.active, m.foci.preferred and the org.matrix.msc3898 variants).
type FocusInfo struct {
	Type              string // FocusTypeMSC3898, FocusTypeLivekit or another
	UserID            id.UserID
	DeviceID          id.DeviceID
	LivekitServiceURL string
	Active            bool // from focus_active or *.foci.active, not a preference
}

// Member is one device's membership of a call.
type Member struct {
	Room     id.RoomID
	UserID   id.UserID
	DeviceID id.DeviceID
	// CallID is m.call_id (legacy) or call_id; "" is the room-wide call.
	CallID string
	// SessionID is the legacy session_id, which clients also send as
	// sender_session_id; empty in the other formats.
	SessionID string
	Foci      []FocusInfo // active ones first
	Expires   time.Time   // zero: no expiry
}

// UsesFocus reports whether m names the MSC3898 focus user (and device,
// when the entry names one) among its foci.
func (m Member) UsesFocus(user id.UserID, device id.DeviceID) bool {
	return slices.ContainsFunc(m.Foci, func(f FocusInfo) bool {
		return f.Type == FocusTypeMSC3898 && f.UserID == user && (f.DeviceID == "" || f.DeviceID == device)
	})
}

func (m Member) expired(now time.Time) bool { return !m.Expires.IsZero() && !now.Before(m.Expires) }

func (m Member) equal(o Member) bool {
	return m.Room == o.Room && m.UserID == o.UserID && m.DeviceID == o.DeviceID && m.CallID == o.CallID &&
		m.SessionID == o.SessionID && m.Expires.Equal(o.Expires) && slices.Equal(m.Foci, o.Foci)
}

// ChangeKind says what happened to a membership.
type ChangeKind int

// Change kinds.
const (
	MemberJoined ChangeKind = iota + 1
	MemberUpdated
	MemberLeft
)

func (k ChangeKind) String() string {
	switch k {
	case MemberJoined:
		return "joined"
	case MemberUpdated:
		return "updated"
	case MemberLeft:
		return "left"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change reports one device joining, updating or leaving a call. For a
// departure Member is the membership as it last was.
type Change struct {
	Member Member
	Kind   ChangeKind
	Left   bool   // Kind == MemberLeft
	Reason string // why it left, for logs: "left the call", "expired", "kicked", …
}

// Memberships tracks call membership in rooms. It is safe for
// concurrent use.
type Memberships struct {
	now   func() time.Time
	mu    sync.Mutex
	rooms map[id.RoomID]*roomCalls
	order uint64 // numbers slots by when they were written
}

// roomCalls is the call membership of one room.
type roomCalls struct {
	slots     map[callSlotKey]*callSlot
	gone      map[id.UserID]bool      // left or banned from the room
	announced map[memberDevice]Member // what the caller has been told
}

type callSlotKey struct{ typ, stateKey string }

type callSlot struct {
	user    id.UserID
	order   uint64
	members []Member
}

type memberDevice struct {
	user   id.UserID
	device id.DeviceID
}

// NewMemberships returns an empty tracker. now is the clock (nil for
// time.Now); expiry is judged by it.
func NewMemberships(now func() time.Time) *Memberships {
	if now == nil {
		now = time.Now
	}
	return &Memberships{now: now, rooms: make(map[id.RoomID]*roomCalls)}
}

// Apply is Update without the error: it applies evt and returns the
// changes. Use Update to log why an event was ignored.
func (m *Memberships) Apply(evt *event.Event) []Change {
	changes, _ := m.Update(evt)
	return changes
}

// Update applies one state event: m.call.member,
// org.matrix.msc3401.call.member or m.room.member; other events are
// ignored. It returns the devices that joined, changed or left as a
// result, sorted by user and device.
//
// A malformed event never panics. Its error says what is wrong, and:
//   - a call-member event whose content cannot be read at all empties
//     its slot (the state now holds garbage, not a membership), so
//     its devices leave; unreadable entries inside a list are skipped
//     and the rest applied;
//   - a call-member event whose state key is not a user's, or whose
//     sender is not that user, changes nothing;
//   - an m.room.member event without a readable membership changes
//     nothing.
func (m *Memberships) Update(evt *event.Event) ([]Change, error) {
	if evt == nil || evt.StateKey == nil || evt.RoomID == "" {
		return nil, nil
	}
	switch evt.Type.Type {
	case StateCallMember.Type, StateCallMemberUnstable.Type:
		return m.updateCall(evt)
	case event.StateMember.Type:
		return m.updateRoomMember(evt)
	}
	return nil, nil
}

func (m *Memberships) updateCall(evt *event.Event) ([]Change, error) {
	typ := evt.Type.Type
	user, keyDevice, err := parseCallStateKey(*evt.StateKey)
	if err != nil {
		return nil, fmt.Errorf("%s: room %s: state key %q: %w", typ, evt.RoomID, *evt.StateKey, err)
	}
	if evt.Sender != user {
		return nil, fmt.Errorf("%s: room %s: sender %s wrote the membership of %s; ignored", typ, evt.RoomID, evt.Sender, user)
	}
	now := m.now()
	members, parseErr := parseCallContent(contentBytes(evt), evt, user, keyDevice, now)
	if parseErr != nil {
		parseErr = fmt.Errorf("%s: room %s: user %s: %w", typ, evt.RoomID, user, parseErr)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.room(evt.RoomID)
	if r.gone[user] {
		return nil, parseErr // stale state of someone not in the room
	}
	key := callSlotKey{typ, *evt.StateKey}
	if len(members) == 0 {
		delete(r.slots, key)
	} else {
		m.order++
		r.slots[key] = &callSlot{user: user, order: m.order, members: members}
	}
	return r.diff(now, "left the call"), parseErr
}

func (m *Memberships) updateRoomMember(evt *event.Event) ([]Change, error) {
	var c struct {
		Membership event.Membership `json:"membership"`
	}
	if err := json.Unmarshal(contentBytes(evt), &c); err != nil || c.Membership == "" {
		if err == nil {
			err = errors.New("membership is missing")
		}
		return nil, fmt.Errorf("m.room.member: room %s: %w", evt.RoomID, err)
	}
	user := id.UserID(*evt.StateKey)
	reason := "left the room"
	switch c.Membership {
	case event.MembershipJoin:
		m.mu.Lock()
		if r := m.rooms[evt.RoomID]; r != nil {
			delete(r.gone, user)
		}
		m.mu.Unlock()
		return nil, nil
	case event.MembershipBan:
		reason = "banned"
	case event.MembershipLeave:
		if evt.Sender != "" && evt.Sender != user {
			reason = "kicked"
		}
	default: // invite, knock: no call membership either way
		return nil, nil
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.room(evt.RoomID)
	r.gone[user] = true
	for k, s := range r.slots {
		if s.user == user {
			delete(r.slots, k)
		}
	}
	return r.diff(now, reason), nil
}

// Lookup returns the device's current, unexpired membership in room. If
// the device is in several calls there, the most recently written wins.
func (m *Memberships) Lookup(room id.RoomID, user id.UserID, device id.DeviceID) (Member, bool) {
	return m.lookup(room, user, device, func(Member) bool { return true })
}

// LookupCall is Lookup restricted to the call callID.
func (m *Memberships) LookupCall(room id.RoomID, user id.UserID, device id.DeviceID, callID string) (Member, bool) {
	return m.lookup(room, user, device, func(mem Member) bool { return mem.CallID == callID })
}

func (m *Memberships) lookup(room id.RoomID, user id.UserID, device id.DeviceID, match func(Member) bool) (Member, bool) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[room]
	if r == nil {
		return Member{}, false
	}
	var best Member
	var bestOrder uint64
	found := false
	for _, s := range r.slots {
		if s.user != user || (found && s.order < bestOrder) {
			continue
		}
		for _, mem := range s.members {
			if mem.DeviceID == device && !mem.expired(now) && match(mem) {
				best, bestOrder, found = mem, s.order, true
			}
		}
	}
	return best, found
}

// Members returns the current, unexpired members of room, sorted by user
// and device.
func (m *Memberships) Members(room id.RoomID) []Member {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[room]
	if r == nil {
		return nil
	}
	view := r.view(now)
	out := make([]Member, 0, len(view))
	for _, mem := range view {
		out = append(out, mem)
	}
	slices.SortFunc(out, func(a, b Member) int { return compareDevice(a, b) })
	return out
}

// Expire drops the memberships that have expired since the last call
// and reports them (and any other change not yet reported).
func (m *Memberships) Expire() []Change {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var changes []Change
	for _, room := range sortedRooms(m.rooms) {
		r := m.rooms[room]
		changes = append(changes, r.diff(now, "expired")...)
		for k, s := range r.slots {
			s.members = slices.DeleteFunc(s.members, func(mem Member) bool { return mem.expired(now) })
			if len(s.members) == 0 {
				delete(r.slots, k)
			}
		}
	}
	return changes
}

// ForgetRoom drops everything known about room (the focus left it or
// was removed) and reports every member there as left.
func (m *Memberships) ForgetRoom(room id.RoomID) []Change {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[room]
	if r == nil {
		return nil
	}
	delete(m.rooms, room)
	changes := make([]Change, 0, len(r.announced))
	for _, mem := range r.announced {
		changes = append(changes, Change{Member: mem, Kind: MemberLeft, Left: true, Reason: "focus left the room"})
	}
	sortChanges(changes)
	return changes
}

// room returns the state of room, creating it. Called with m.mu held.
func (m *Memberships) room(room id.RoomID) *roomCalls {
	r := m.rooms[room]
	if r == nil {
		r = &roomCalls{
			slots:     make(map[callSlotKey]*callSlot),
			gone:      make(map[id.UserID]bool),
			announced: make(map[memberDevice]Member),
		}
		m.rooms[room] = r
	}
	return r
}

// view is the current membership of the room: per device, the entry
// from the newest slot, unexpired.
func (r *roomCalls) view(now time.Time) map[memberDevice]Member {
	out := make(map[memberDevice]Member)
	orders := make(map[memberDevice]uint64)
	for _, s := range r.slots {
		for _, mem := range s.members {
			k := memberDevice{mem.UserID, mem.DeviceID}
			if mem.expired(now) {
				continue
			}
			if o, seen := orders[k]; seen && o > s.order {
				continue
			}
			out[k], orders[k] = mem, s.order
		}
	}
	return out
}

// diff compares the view with what was announced, announces it and
// returns the difference. reason is given to departures that did not
// expire.
func (r *roomCalls) diff(now time.Time, reason string) []Change {
	cur := r.view(now)
	var changes []Change
	for k, old := range r.announced {
		if _, still := cur[k]; !still {
			why := reason
			if old.expired(now) {
				why = "expired"
			}
			changes = append(changes, Change{Member: old, Kind: MemberLeft, Left: true, Reason: why})
		}
	}
	for k, mem := range cur {
		old, was := r.announced[k]
		switch {
		case !was:
			changes = append(changes, Change{Member: mem, Kind: MemberJoined})
		case !old.equal(mem):
			changes = append(changes, Change{Member: mem, Kind: MemberUpdated})
		}
	}
	r.announced = cur
	sortChanges(changes)
	return changes
}

func compareDevice(a, b Member) int {
	if c := strings.Compare(string(a.UserID), string(b.UserID)); c != 0 {
		return c
	}
	return strings.Compare(string(a.DeviceID), string(b.DeviceID))
}

func sortChanges(cs []Change) {
	slices.SortFunc(cs, func(a, b Change) int {
		if c := strings.Compare(string(a.Member.Room), string(b.Member.Room)); c != 0 {
			return c
		}
		return compareDevice(a.Member, b.Member)
	})
}

func sortedRooms(rooms map[id.RoomID]*roomCalls) []id.RoomID {
	out := make([]id.RoomID, 0, len(rooms))
	for r := range rooms {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// contentBytes returns the raw content of evt.
func contentBytes(evt *event.Event) []byte {
	if len(evt.Content.VeryRaw) > 0 {
		return evt.Content.VeryRaw
	}
	if evt.Content.Raw == nil && evt.Content.Parsed == nil {
		return nil
	}
	b, err := evt.Content.MarshalJSON()
	if err != nil {
		return []byte("null") // unreadable: treated as malformed
	}
	return b
}

// parseCallStateKey reads the user (and device, if any) from a call
// member state key: `@user:hs`, `@user:hs_DEVICE`, `_@user:hs_DEVICE`,
// optionally followed by `_m.call` (the application).
func parseCallStateKey(key string) (id.UserID, id.DeviceID, error) {
	s := strings.TrimPrefix(key, "_")
	colon := strings.IndexByte(s, ':')
	if !strings.HasPrefix(s, "@") || colon < 2 {
		return "", "", errors.New("does not start with a user ID")
	}
	// Server names have no '_', so the first one after the colon ends
	// the user ID.
	user, device := s, ""
	if us := strings.IndexByte(s[colon:], '_'); us >= 0 {
		user, device = s[:colon+us], s[colon+us+1:]
		device = strings.TrimSuffix(device, "_m.call")
		if device == "" {
			return "", "", errors.New("has an empty device ID")
		}
	}
	if _, _, err := id.UserID(user).Parse(); err != nil || strings.HasSuffix(user, ":") {
		return "", "", fmt.Errorf("user ID %q is invalid", user)
	}
	return id.UserID(user), id.DeviceID(device), nil
}

// parseCallContent reads the members a call-member event declares. An
// error with no members means the content is unreadable; an error with
// members means some entries were skipped.
func parseCallContent(raw []byte, evt *event.Event, user id.UserID, keyDevice id.DeviceID, now time.Time) ([]Member, error) {
	if len(raw) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), MaxMessageSize)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil // redacted or absent: nobody
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(top) == 0 {
		return nil, nil // {}: the device(s) left
	}
	base := Member{Room: evt.RoomID, UserID: user}
	origin := evt.Timestamp
	if calls, ok := top["m.calls"]; ok {
		return parseLegacyCalls(calls, base, origin, now)
	}
	if list, ok := top["memberships"]; ok {
		return parseMembershipList(list, base, origin, now)
	}
	mem, ok, err := parseSession(raw, base, keyDevice, origin, now)
	if err != nil || !ok {
		return nil, err
	}
	return []Member{mem}, nil
}

// parseLegacyCalls reads MSC3401's m.calls[].m.devices[].
func parseLegacyCalls(raw json.RawMessage, base Member, origin int64, now time.Time) ([]Member, error) {
	var calls []json.RawMessage
	if err := json.Unmarshal(raw, &calls); err != nil {
		return nil, fmt.Errorf("%w: m.calls: %w", ErrInvalid, err)
	}
	var members []Member
	var errs []error
	for i, c := range calls {
		var call struct {
			CallID  string            `json:"m.call_id"`
			Foci    json.RawMessage   `json:"m.foci"` // early MSC3401: the call's foci
			Devices []json.RawMessage `json:"m.devices"`
		}
		if err := json.Unmarshal(c, &call); err != nil {
			errs = append(errs, fmt.Errorf("m.calls[%d]: %w", i, err))
			continue
		}
		callFoci := parseFoci(call.Foci, false)
		for j, d := range call.Devices {
			var dev struct {
				DeviceID          id.DeviceID     `json:"device_id"`
				SessionID         string          `json:"session_id"`
				ExpiresTS         *float64        `json:"expires_ts"`
				Expires           *float64        `json:"expires"`
				CreatedTS         *float64        `json:"created_ts"`
				Active            json.RawMessage `json:"m.foci.active"`
				Preferred         json.RawMessage `json:"m.foci.preferred"`
				UnstableActive    json.RawMessage `json:"org.matrix.msc3898.foci.active"`
				UnstablePreferred json.RawMessage `json:"org.matrix.msc3898.foci.preferred"`
			}
			if err := json.Unmarshal(d, &dev); err != nil {
				errs = append(errs, fmt.Errorf("m.calls[%d].m.devices[%d]: %w", i, j, err))
				continue
			}
			if dev.DeviceID == "" {
				errs = append(errs, fmt.Errorf("m.calls[%d].m.devices[%d]: device_id is empty", i, j))
				continue
			}
			mem := base
			mem.DeviceID, mem.CallID, mem.SessionID = dev.DeviceID, call.CallID, dev.SessionID
			mem.Expires = expiry(dev.ExpiresTS, dev.Expires, dev.CreatedTS, origin, now)
			mem.Foci = joinFoci(
				parseFoci(dev.Active, true), parseFoci(dev.UnstableActive, true),
				parseFoci(dev.Preferred, false), parseFoci(dev.UnstablePreferred, false), callFoci)
			members = append(members, mem)
		}
	}
	return members, wrapSkipped(errs)
}

// parseMembershipList reads MatrixRTC's interim {"memberships":[…]}.
func parseMembershipList(raw json.RawMessage, base Member, origin int64, now time.Time) ([]Member, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%w: memberships: %w", ErrInvalid, err)
	}
	var members []Member
	var errs []error
	for i, e := range list {
		mem, ok, err := parseSession(e, base, "", origin, now)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("memberships[%d]: %w", i, err))
		case ok:
			members = append(members, mem)
		}
	}
	return members, wrapSkipped(errs)
}

// parseSession reads one per-device membership. ok is false, with no
// error, for an application other than m.call.
func parseSession(raw json.RawMessage, base Member, keyDevice id.DeviceID, origin int64, now time.Time) (Member, bool, error) {
	var s struct {
		Application   string          `json:"application"`
		CallID        string          `json:"call_id"`
		DeviceID      id.DeviceID     `json:"device_id"`
		Expires       *float64        `json:"expires"`
		ExpiresTS     *float64        `json:"expires_ts"`
		CreatedTS     *float64        `json:"created_ts"`
		FocusActive   json.RawMessage `json:"focus_active"`
		FociActive    json.RawMessage `json:"foci_active"`
		FociPreferred json.RawMessage `json:"foci_preferred"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return Member{}, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if s.Application != "" && s.Application != "m.call" {
		return Member{}, false, nil
	}
	mem := base
	mem.DeviceID = s.DeviceID
	if mem.DeviceID == "" {
		mem.DeviceID = keyDevice
	}
	if mem.DeviceID == "" {
		return Member{}, false, fmt.Errorf("%w: device_id is empty and the state key names no device", ErrInvalid)
	}
	mem.CallID = s.CallID
	mem.Expires = expiry(s.ExpiresTS, s.Expires, s.CreatedTS, origin, now)
	mem.Foci = joinFoci(parseFoci(s.FocusActive, true), parseFoci(s.FociActive, true), parseFoci(s.FociPreferred, false))
	return mem, true, nil
}

func wrapSkipped(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: skipped %d entries: %w", ErrInvalid, len(errs), errors.Join(errs...))
}

// expiry is expiresTS (absolute, ms) if set, else expires (a duration in
// ms) after createdTS, or after the event's origin_server_ts, or after
// now. No expiry at all is the zero time.
func expiry(expiresTS, expires, createdTS *float64, origin int64, now time.Time) time.Time {
	if expiresTS != nil {
		return fromMillis(*expiresTS)
	}
	if expires == nil {
		return time.Time{}
	}
	var start float64
	switch {
	case createdTS != nil:
		start = *createdTS
	case origin > 0:
		start = float64(origin)
	default:
		start = float64(now.UnixMilli())
	}
	return fromMillis(start + *expires)
}

func fromMillis(ms float64) time.Time {
	switch {
	case math.IsNaN(ms) || ms > maxExpiryMillis:
		return time.Time{}
	case ms < 1:
		return time.UnixMilli(1).UTC() // already expired
	}
	return time.UnixMilli(int64(ms)).UTC()
}

// parseFoci reads a list of foci, or a single one, leniently: entries
// that are neither a focus object nor a user-ID string are skipped.
func parseFoci(raw json.RawMessage, active bool) []FocusInfo {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var list []json.RawMessage
	if raw[0] == '[' {
		if json.Unmarshal(raw, &list) != nil {
			return nil
		}
	} else {
		list = []json.RawMessage{raw}
	}
	var out []FocusInfo
	for _, e := range list {
		if len(out) == maxFociPerList {
			break
		}
		if f, ok := parseFocus(e); ok {
			f.Active = active
			out = append(out, f)
		}
	}
	return out
}

func parseFocus(raw json.RawMessage) (FocusInfo, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		user, device, _ := strings.Cut(s, "|")
		if !strings.HasPrefix(user, "@") {
			return FocusInfo{}, false
		}
		return FocusInfo{Type: FocusTypeMSC3898, UserID: id.UserID(user), DeviceID: id.DeviceID(device)}, true
	}
	var o struct {
		Type              string      `json:"type"`
		UserID            id.UserID   `json:"user_id"`
		DeviceID          id.DeviceID `json:"device_id"`
		LivekitServiceURL string      `json:"livekit_service_url"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return FocusInfo{}, false
	}
	if o.Type == "" && o.UserID != "" {
		o.Type = FocusTypeMSC3898
	}
	if o.Type == "" {
		return FocusInfo{}, false
	}
	return FocusInfo{Type: o.Type, UserID: o.UserID, DeviceID: o.DeviceID, LivekitServiceURL: o.LivekitServiceURL}, true
}

// joinFoci concatenates lists, dropping repeats (the same focus in an
// active and a preferred list stays once, as active).
func joinFoci(lists ...[]FocusInfo) []FocusInfo {
	var out []FocusInfo
	for _, l := range lists {
		for _, f := range l {
			if !slices.ContainsFunc(out, func(g FocusInfo) bool {
				return g.Type == f.Type && g.UserID == f.UserID && g.DeviceID == f.DeviceID && g.LivekitServiceURL == f.LivekitServiceURL
			}) {
				out = append(out, f)
			}
		}
	}
	return out
}
