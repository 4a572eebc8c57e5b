package matrix

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

const memberRoom = id.RoomID("!room:hs")

// memberT0 is the test clock's start, in ms.
const memberT0 = 1_700_000_000_000

type memberClock struct {
	mu sync.Mutex
	t  time.Time
}

func newMemberClock() *memberClock { return &memberClock{t: time.UnixMilli(memberT0)} }

func (c *memberClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *memberClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// memberStateEvent builds a state event the way the transport gets one: decoded
// from JSON, so the content's raw bytes are kept. content "" is omitted.
func memberStateEvent(t testing.TB, typ string, sender id.UserID, stateKey, content string, ts int64) *event.Event {
	t.Helper()
	raw := fmt.Sprintf(`{"type":%q,"room_id":%q,"sender":%q,"state_key":%q,"origin_server_ts":%d,"event_id":"$e"`,
		typ, memberRoom, sender, stateKey, ts)
	if content != "" {
		raw += `,"content":` + content
	}
	raw += "}"
	var evt event.Event
	if err := json.Unmarshal([]byte(raw), &evt); err != nil {
		// mautrix refuses content that is not an object; a homeserver
		// would too, but the tracker must survive it anyway.
		return &event.Event{Type: event.Type{Type: typ, Class: event.StateEventType}, RoomID: memberRoom, Sender: sender,
			StateKey: &stateKey, Timestamp: ts, Content: event.Content{VeryRaw: json.RawMessage(content)}}
	}
	return &evt
}

// changes renders changes compactly: "+@a:hs/A", "~@a:hs/A", "-@a:hs/A(expired)".
func memberChanges(cs []Change) string {
	var parts []string
	for _, c := range cs {
		s := string(c.Member.UserID) + "/" + string(c.Member.DeviceID)
		switch c.Kind {
		case MemberJoined:
			s = "+" + s
		case MemberUpdated:
			s = "~" + s
		case MemberLeft:
			s = "-" + s + "(" + c.Reason + ")"
			if !c.Left {
				s += "!LeftFalse"
			}
		}
		if c.Kind != MemberLeft && c.Left {
			s += "!LeftTrue"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func mustUpdate(t *testing.T, m *Memberships, evt *event.Event, want string) []Change {
	t.Helper()
	cs, err := m.Update(evt)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := memberChanges(cs); got != want {
		t.Fatalf("changes %q, want %q", got, want)
	}
	return cs
}

const legacyTwoDevices = `{"m.calls":[{"m.call_id":"conf1","m.devices":[
	{"device_id":"A1","session_id":"sA1","expires_ts":%d,"feeds":[{"purpose":"m.usermedia"}],
	 "m.foci.active":[{"user_id":"@focus:hs","device_id":"FOCUSDEV"}],
	 "m.foci.preferred":["@other:hs|OTHER", "@focus:hs|FOCUSDEV", 5, "https://not-a-user"]},
	{"device_id":"A2","session_id":"sA2","expires_ts":%d,
	 "org.matrix.msc3898.foci.active":["@focus:hs"],
	 "org.matrix.msc3898.foci.preferred":[{"type":"livekit","livekit_service_url":"https://lk.example"}]}]}]}`

func TestLegacyCallMember(t *testing.T) {
	clk := newMemberClock()
	m := NewMemberships(clk.now)
	exp1, exp2 := int64(memberT0+60_000), int64(memberT0+120_000)
	evt := memberStateEvent(t, "m.call.member", "@a:hs", "@a:hs", fmt.Sprintf(legacyTwoDevices, exp1, exp2), memberT0)
	mustUpdate(t, m, evt, "+@a:hs/A1 +@a:hs/A2")

	a1, ok := m.Lookup(memberRoom, "@a:hs", "A1")
	if !ok {
		t.Fatal("A1 not found")
	}
	if a1.Room != memberRoom || a1.CallID != "conf1" || a1.SessionID != "sA1" || !a1.Expires.Equal(time.UnixMilli(exp1)) {
		t.Fatalf("bad A1 %+v", a1)
	}
	wantFoci := []FocusInfo{
		{Type: FocusTypeMSC3898, UserID: "@focus:hs", DeviceID: "FOCUSDEV", Active: true},
		{Type: FocusTypeMSC3898, UserID: "@other:hs", DeviceID: "OTHER"},
	}
	if !slices.Equal(a1.Foci, wantFoci) {
		t.Fatalf("A1 foci %+v, want %+v", a1.Foci, wantFoci)
	}
	if !a1.UsesFocus("@focus:hs", "FOCUSDEV") || a1.UsesFocus("@focus:hs", "ELSE") || a1.UsesFocus("@nobody:hs", "FOCUSDEV") {
		t.Fatal("UsesFocus wrong for A1")
	}
	a2, _ := m.Lookup(memberRoom, "@a:hs", "A2")
	if !a2.UsesFocus("@focus:hs", "ANYDEV") { // a focus named by user only
		t.Fatalf("A2 foci %+v", a2.Foci)
	}
	if len(a2.Foci) != 2 || a2.Foci[1].Type != FocusTypeLivekit || a2.Foci[1].LivekitServiceURL != "https://lk.example" {
		t.Fatalf("A2 foci %+v", a2.Foci)
	}

	// A2 leaves, A1 refreshes its expiry.
	evt = memberStateEvent(t, "m.call.member", "@a:hs", "@a:hs",
		fmt.Sprintf(`{"m.calls":[{"m.call_id":"conf1","m.devices":[{"device_id":"A1","session_id":"sA1","expires_ts":%d,
		"m.foci.active":[{"user_id":"@focus:hs","device_id":"FOCUSDEV"}]}]}]}`, exp2), memberT0+1)
	mustUpdate(t, m, evt, "~@a:hs/A1 -@a:hs/A2(left the call)")
	if _, ok := m.Lookup(memberRoom, "@a:hs", "A2"); ok {
		t.Fatal("A2 still found")
	}
	// The same content again: nothing changes.
	mustUpdate(t, m, evt, "")
	// Empty m.calls: everyone left.
	mustUpdate(t, m, memberStateEvent(t, "m.call.member", "@a:hs", "@a:hs", `{"m.calls":[]}`, memberT0+2), "-@a:hs/A1(left the call)")
}

func TestPerDeviceCallMember(t *testing.T) {
	tests := []struct {
		name, stateKey, content string
		origin                  int64
		device                  id.DeviceID
		callID                  string
		expires                 int64 // ms; 0 = none
		foci                    []FocusInfo
	}{
		{
			name:     "element call style key, created_ts + expires",
			stateKey: "_@b:hs_B1_m.call",
			content: `{"application":"m.call","call_id":"","scope":"m.room","device_id":"B1","expires":14400000,"created_ts":1700000000500,
				"focus_active":{"type":"org.matrix.msc3898","user_id":"@focus:hs","device_id":"FOCUSDEV"},
				"foci_preferred":[{"type":"org.matrix.msc3898","user_id":"@focus:hs","device_id":"FOCUSDEV"},{"type":"livekit","livekit_service_url":"https://lk"}]}`,
			origin: memberT0 + 9, device: "B1", callID: "", expires: memberT0 + 500 + 14400000,
			foci: []FocusInfo{{Type: FocusTypeMSC3898, UserID: "@focus:hs", DeviceID: "FOCUSDEV", Active: true}, {Type: FocusTypeLivekit, LivekitServiceURL: "https://lk"}},
		},
		{
			name:     "plain key, origin_server_ts + expires",
			stateKey: "@b:hs_B2",
			content:  `{"application":"m.call","call_id":"conf9","device_id":"B2","expires":60000,"focus_active":{"type":"livekit","focus_selection":"oldest_membership"},"foci_preferred":[]}`,
			origin:   memberT0 + 7, device: "B2", callID: "conf9", expires: memberT0 + 7 + 60000,
			foci: []FocusInfo{{Type: FocusTypeLivekit, Active: true}},
		},
		{
			name:     "underscore key, device from the key, no expiry",
			stateKey: "_@b:hs_B_3",
			content:  `{"application":"m.call","call_id":"","foci_preferred":["@focus:hs|FOCUSDEV"]}`,
			origin:   memberT0, device: "B_3",
			foci: []FocusInfo{{Type: FocusTypeMSC3898, UserID: "@focus:hs", DeviceID: "FOCUSDEV"}},
		},
		{
			name:     "expires_ts wins",
			stateKey: "_@b:hs_B4_m.call",
			content:  `{"application":"m.call","call_id":"","device_id":"B4","expires":1,"expires_ts":1700000099000,"focus_active":{"type":"org.matrix.msc3898","user_id":"@focus:hs"}}`,
			origin:   memberT0, device: "B4", expires: 1700000099000,
			foci: []FocusInfo{{Type: FocusTypeMSC3898, UserID: "@focus:hs", Active: true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, typ := range []string{"org.matrix.msc3401.call.member", "m.call.member"} {
				m := NewMemberships(newMemberClock().now)
				mustUpdate(t, m, memberStateEvent(t, typ, "@b:hs", tc.stateKey, tc.content, tc.origin), "+@b:hs/"+string(tc.device))
				mem, ok := m.Lookup(memberRoom, "@b:hs", tc.device)
				if !ok {
					t.Fatalf("%s: not found", typ)
				}
				var wantExp time.Time
				if tc.expires != 0 {
					wantExp = time.UnixMilli(tc.expires)
				}
				if mem.CallID != tc.callID || !mem.Expires.Equal(wantExp) || !slices.Equal(mem.Foci, tc.foci) {
					t.Fatalf("%s: got call %q expires %v foci %+v; want %q %v %+v", typ, mem.CallID, mem.Expires, mem.Foci, tc.callID, wantExp, tc.foci)
				}
				// Empty content: the device left.
				mustUpdate(t, m, memberStateEvent(t, typ, "@b:hs", tc.stateKey, `{}`, tc.origin+1), "-@b:hs/"+string(tc.device)+"(left the call)")
			}
		})
	}
}

func TestEmptyAndRedactedContent(t *testing.T) {
	for _, content := range []string{`{}`, ``, `null`, ` { } `} {
		m := NewMemberships(newMemberClock().now)
		key := "_@c:hs_C_m.call"
		mustUpdate(t, m, memberStateEvent(t, "org.matrix.msc3401.call.member", "@c:hs", key, `{"application":"m.call","call_id":"","device_id":"C"}`, memberT0), "+@c:hs/C")
		mustUpdate(t, m, memberStateEvent(t, "org.matrix.msc3401.call.member", "@c:hs", key, content, memberT0+1), "-@c:hs/C(left the call)")
	}
}

func TestMembershipList(t *testing.T) {
	m := NewMemberships(newMemberClock().now)
	content := `{"memberships":[
		{"application":"m.call","call_id":"","scope":"m.room","device_id":"D1","expires":3600000,"membershipID":"x",
		 "foci_active":[{"type":"livekit","livekit_service_url":"https://lk"},{"type":"org.matrix.msc3898","user_id":"@focus:hs","device_id":"F"}]},
		{"application":"io.element.whiteboard","call_id":"","device_id":"D2","expires":3600000},
		{"application":"m.call","call_id":"","device_id":"D3","expires_ts":1700000001000}]}`
	mustUpdate(t, m, memberStateEvent(t, "org.matrix.msc3401.call.member", "@d:hs", "@d:hs", content, memberT0), "+@d:hs/D1 +@d:hs/D3")
	d1, _ := m.Lookup(memberRoom, "@d:hs", "D1")
	if !d1.Expires.Equal(time.UnixMilli(memberT0+3600000)) || !d1.UsesFocus("@focus:hs", "F") {
		t.Fatalf("bad D1 %+v", d1)
	}
}

func TestExpiry(t *testing.T) {
	clk := newMemberClock()
	m := NewMemberships(clk.now)
	content := fmt.Sprintf(legacyTwoDevices, memberT0+60_000, memberT0+120_000)
	mustUpdate(t, m, memberStateEvent(t, "m.call.member", "@a:hs", "@a:hs", content, memberT0), "+@a:hs/A1 +@a:hs/A2")
	if cs := m.Expire(); len(cs) != 0 {
		t.Fatalf("early Expire: %s", memberChanges(cs))
	}
	clk.advance(60 * time.Second) // A1 expires exactly now
	if _, ok := m.Lookup(memberRoom, "@a:hs", "A1"); ok {
		t.Fatal("expired A1 still found by Lookup before Expire")
	}
	if _, ok := m.Lookup(memberRoom, "@a:hs", "A2"); !ok {
		t.Fatal("A2 not found")
	}
	if got := memberChanges(m.Expire()); got != "-@a:hs/A1(expired)" {
		t.Fatalf("Expire: %q", got)
	}
	if cs := m.Expire(); len(cs) != 0 {
		t.Fatalf("expiry reported twice: %s", memberChanges(cs))
	}
	clk.advance(time.Hour)
	if got := memberChanges(m.Expire()); got != "-@a:hs/A2(expired)" {
		t.Fatalf("Expire: %q", got)
	}
	if got := m.Members(memberRoom); len(got) != 0 {
		t.Fatalf("members left: %+v", got)
	}

	// Already expired when applied (old state loaded at join): never joins.
	mustUpdate(t, m, memberStateEvent(t, "m.call.member", "@a:hs", "@a:hs", content, memberT0), "")
	// A refresh with a later expiry brings it back.
	later := clk.now().Add(time.Minute).UnixMilli()
	mustUpdate(t, m, memberStateEvent(t, "m.call.member", "@a:hs", "@a:hs", fmt.Sprintf(legacyTwoDevices, later, later), memberT0), "+@a:hs/A1 +@a:hs/A2")
}

func TestExpiryReportedByLaterUpdate(t *testing.T) {
	clk := newMemberClock()
	m := NewMemberships(clk.now)
	mustUpdate(t, m, memberStateEvent(t, "org.matrix.msc3401.call.member", "@e:hs", "_@e:hs_E1_m.call",
		`{"application":"m.call","call_id":"","device_id":"E1","expires":1000}`, memberT0), "+@e:hs/E1")
	clk.advance(2 * time.Second)
	// The next update in the room reports the expiry; Expire then has nothing.
	mustUpdate(t, m, memberStateEvent(t, "org.matrix.msc3401.call.member", "@e:hs", "_@e:hs_E2_m.call",
		`{"application":"m.call","call_id":"","device_id":"E2"}`, memberT0+2000), "-@e:hs/E1(expired) +@e:hs/E2")
	if cs := m.Expire(); len(cs) != 0 {
		t.Fatalf("Expire: %s", memberChanges(cs))
	}
}

func TestRoomMemberLeaveKickBan(t *testing.T) {
	join := func(m *Memberships, user id.UserID, dev string) {
		t.Helper()
		mustUpdate(t, m, memberStateEvent(t, "org.matrix.msc3401.call.member", user, "_"+string(user)+"_"+dev+"_m.call",
			`{"application":"m.call","call_id":"","device_id":"`+dev+`"}`, memberT0), "+"+string(user)+"/"+dev)
	}
	tests := []struct {
		name, sender, membership, reason string
	}{
		{"leave", "@u:hs", "leave", "left the room"},
		{"kick", "@mod:hs", "leave", "kicked"},
		{"ban", "@mod:hs", "ban", "banned"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemberships(newMemberClock().now)
			join(m, "@u:hs", "U1")
			mustUpdate(t, m, memberStateEvent(t, "m.call.member", "@u:hs", "@u:hs",
				`{"m.calls":[{"m.call_id":"","m.devices":[{"device_id":"U2","session_id":"s"}]}]}`, memberT0), "+@u:hs/U2")
			join(m, "@v:hs", "V1")
			mustUpdate(t, m, memberStateEvent(t, "m.room.member", id.UserID(tc.sender), "@u:hs", `{"membership":"`+tc.membership+`"}`, memberT0+1),
				"-@u:hs/U1("+tc.reason+") -@u:hs/U2("+tc.reason+")")
			if _, ok := m.Lookup(memberRoom, "@v:hs", "V1"); !ok {
				t.Fatal("another user was dropped")
			}
			// Stale call membership of someone not in the room is ignored...
			mustUpdate(t, m, memberStateEvent(t, "org.matrix.msc3401.call.member", "@u:hs", "_@u:hs_U1_m.call",
				`{"application":"m.call","call_id":"","device_id":"U1"}`, memberT0+2), "")
			// ...until they join again.
			mustUpdate(t, m, memberStateEvent(t, "m.room.member", "@u:hs", "@u:hs", `{"membership":"join"}`, memberT0+3), "")
			join(m, "@u:hs", "U1")
		})
	}
	// Invites and knocks change nothing.
	m := NewMemberships(nil)
	mustUpdate(t, m, memberStateEvent(t, "m.room.member", "@mod:hs", "@w:hs", `{"membership":"invite"}`, memberT0), "")
}

func TestForgetRoom(t *testing.T) {
	m := NewMemberships(newMemberClock().now)
	mustUpdate(t, m, memberStateEvent(t, "m.call.member", "@a:hs", "@a:hs", fmt.Sprintf(legacyTwoDevices, memberT0+60_000, 0), memberT0), "+@a:hs/A1")
	got := m.ForgetRoom(memberRoom)
	if memberChanges(got) != "-@a:hs/A1(focus left the room)" || got[0].Member.Room != memberRoom {
		t.Fatalf("ForgetRoom: %q", memberChanges(got))
	}
	if _, ok := m.Lookup(memberRoom, "@a:hs", "A1"); ok {
		t.Fatal("still found after ForgetRoom")
	}
	if m.ForgetRoom(memberRoom) != nil || m.ForgetRoom("!other:hs") != nil {
		t.Fatal("ForgetRoom of an unknown room reported changes")
	}
}

func TestNewestSlotWins(t *testing.T) {
	m := NewMemberships(newMemberClock().now)
	mustUpdate(t, m, memberStateEvent(t, "m.call.member", "@a:hs", "@a:hs",
		`{"m.calls":[{"m.call_id":"old","m.devices":[{"device_id":"A","session_id":"s"}]}]}`, memberT0), "+@a:hs/A")
	mustUpdate(t, m, memberStateEvent(t, "org.matrix.msc3401.call.member", "@a:hs", "_@a:hs_A_m.call",
		`{"application":"m.call","call_id":"new","device_id":"A"}`, memberT0+1), "~@a:hs/A")
	if mem, _ := m.Lookup(memberRoom, "@a:hs", "A"); mem.CallID != "new" {
		t.Fatalf("call %q, want new", mem.CallID)
	}
	if mem, ok := m.LookupCall(memberRoom, "@a:hs", "A", "old"); !ok || mem.CallID != "old" {
		t.Fatalf("LookupCall old: %+v %v", mem, ok)
	}
	if _, ok := m.LookupCall(memberRoom, "@a:hs", "A", "other"); ok {
		t.Fatal("LookupCall found a call the device is not in")
	}
	// The newer slot empties: the older one shows through.
	mustUpdate(t, m, memberStateEvent(t, "org.matrix.msc3401.call.member", "@a:hs", "_@a:hs_A_m.call", `{}`, memberT0+2), "~@a:hs/A")
	if mem, _ := m.Lookup(memberRoom, "@a:hs", "A"); mem.CallID != "old" {
		t.Fatalf("call %q, want old", mem.CallID)
	}
}

func TestMalformedMembership(t *testing.T) {
	good := `{"application":"m.call","call_id":"","device_id":"M"}`
	key := "_@m:hs_M_m.call"
	typ := "org.matrix.msc3401.call.member"
	tests := []struct {
		name     string
		evt      func(t *testing.T) *event.Event
		changes  string // after a good membership of @m:hs/M was applied
		errMatch string
	}{
		{"not an object", func(t *testing.T) *event.Event { return memberStateEvent(t, typ, "@m:hs", key, `[1,2]`, memberT0) },
			"-@m:hs/M(left the call)", "invalid message"},
		{"wrong field type", func(t *testing.T) *event.Event {
			return memberStateEvent(t, typ, "@m:hs", key, `{"application":"m.call","call_id":5,"device_id":"M"}`, memberT0)
		}, "-@m:hs/M(left the call)", "cannot unmarshal number"},
		{"m.calls not a list", func(t *testing.T) *event.Event {
			return memberStateEvent(t, "m.call.member", "@m:hs", "@m:hs", `{"m.calls":{}}`, memberT0)
		},
			"", "m.calls"},
		{"device without id skipped, others kept", func(t *testing.T) *event.Event {
			return memberStateEvent(t, "m.call.member", "@m:hs", "@m:hs",
				`{"m.calls":[{"m.call_id":"","m.devices":[{"session_id":"x"},{"device_id":"M2"},"junk"]},7]}`, memberT0)
		}, "+@m:hs/M2", "skipped 3 entries"},
		{"no device anywhere", func(t *testing.T) *event.Event {
			return memberStateEvent(t, typ, "@m:hs", "@m:hs", `{"application":"m.call","call_id":""}`, memberT0)
		}, "", "device_id is empty"},
		{"someone else's state key", func(t *testing.T) *event.Event { return memberStateEvent(t, typ, "@evil:hs", key, `{}`, memberT0) },
			"", "sender @evil:hs wrote the membership of @m:hs"},
		{"bad state key", func(t *testing.T) *event.Event { return memberStateEvent(t, typ, "@m:hs", "M_m.call", good, memberT0) },
			"", "does not start with a user ID"},
		{"too large", func(t *testing.T) *event.Event {
			return memberStateEvent(t, typ, "@m:hs", key, `{"x":"`+strings.Repeat("a", MaxMessageSize)+`"}`, memberT0)
		}, "-@m:hs/M(left the call)", "message too large"},
		{"room member without membership", func(t *testing.T) *event.Event {
			return memberStateEvent(t, "m.room.member", "@m:hs", "@m:hs", `{}`, memberT0)
		},
			"", "membership is missing"},
		{"room member not an object", func(t *testing.T) *event.Event {
			return memberStateEvent(t, "m.room.member", "@m:hs", "@m:hs", `"leave"`, memberT0)
		},
			"", "m.room.member"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemberships(newMemberClock().now)
			mustUpdate(t, m, memberStateEvent(t, typ, "@m:hs", key, good, memberT0), "+@m:hs/M")
			cs, err := m.Update(tc.evt(t))
			if err == nil || !strings.Contains(err.Error(), tc.errMatch) {
				t.Fatalf("error %v, want one containing %q", err, tc.errMatch)
			}
			if got := memberChanges(cs); got != tc.changes {
				t.Fatalf("changes %q, want %q", got, tc.changes)
			}
		})
	}
	// Errors from content are classified.
	m := NewMemberships(nil)
	_, err := m.Update(memberStateEvent(t, typ, "@m:hs", key, `[]`, memberT0))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("%v is not ErrInvalid", err)
	}
	// Apply drops the error but applies the same way.
	if cs := m.Apply(memberStateEvent(t, typ, "@m:hs", key, good, memberT0)); memberChanges(cs) != "+@m:hs/M" {
		t.Fatalf("Apply: %q", memberChanges(cs))
	}
}

func TestIgnoredEvents(t *testing.T) {
	m := NewMemberships(nil)
	for _, evt := range []*event.Event{
		nil,
		{Type: event.EventMessage, RoomID: memberRoom},                              // not state
		memberStateEvent(t, "m.room.topic", "@a:hs", "", `{"topic":"x"}`, memberT0), // other state
		{Type: StateCallMember, Sender: "@a:hs", StateKey: new(string), RoomID: ""}, // no room
	} {
		cs, err := m.Update(evt)
		if cs != nil || err != nil {
			t.Fatalf("%+v: %v %v", evt, cs, err)
		}
	}
	// Content given as a parsed map (no raw bytes) is read too.
	key := "@a:hs_A"
	evt := &event.Event{Type: StateCallMemberUnstable, Sender: "@a:hs", StateKey: &key, RoomID: memberRoom,
		Content: event.Content{Raw: map[string]any{"application": "m.call", "call_id": "", "device_id": "A"}}}
	if cs := m.Apply(evt); memberChanges(cs) != "+@a:hs/A" {
		t.Fatalf("map content: %q", memberChanges(cs))
	}
}

func TestParseCallStateKey(t *testing.T) {
	tests := []struct {
		key    string
		user   id.UserID
		device id.DeviceID
		err    bool
	}{
		{"@a:hs", "@a:hs", "", false},
		{"@a:hs_DEV", "@a:hs", "DEV", false},
		{"_@a:hs_DEV", "@a:hs", "DEV", false},
		{"_@a:hs_DEV_m.call", "@a:hs", "DEV", false},
		{"_@a:hs:8448_DEV_X_m.call", "@a:hs:8448", "DEV_X", false},
		{"@a_b:hs_DEV", "@a_b:hs", "DEV", false},
		{"_@a:[::1]:8448_DEV", "@a:[::1]:8448", "DEV", false},
		{"@a:hs_", "", "", true},
		{"@a:hs__m.call", "", "", true},
		{"a:hs", "", "", true},
		{"@:hs", "", "", true},
		{"@a", "", "", true},
		{"@a:", "", "", true},
		{"", "", "", true},
		{"_", "", "", true},
	}
	for _, tc := range tests {
		user, device, err := parseCallStateKey(tc.key)
		if (err != nil) != tc.err || user != tc.user || device != tc.device {
			t.Errorf("parseCallStateKey(%q) = %q, %q, %v", tc.key, user, device, err)
		}
	}
}

func TestMembershipsConcurrent(t *testing.T) {
	m := NewMemberships(nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := id.UserID(fmt.Sprintf("@u%d:hs", i))
			for j := range 50 {
				key := fmt.Sprintf("_%s_D%d_m.call", user, j%3)
				content := fmt.Sprintf(`{"application":"m.call","call_id":"","device_id":"D%d","expires":%d}`, j%3, j%2)
				m.Apply(memberStateEvent(t, "org.matrix.msc3401.call.member", user, key, content, memberT0))
				m.Lookup(memberRoom, user, "D1")
				m.Members(memberRoom)
				m.Expire()
			}
		}()
	}
	wg.Wait()
}

func FuzzMembership(f *testing.F) {
	f.Add("@a:hs", []byte(fmt.Sprintf(legacyTwoDevices, memberT0+60_000, 0)))
	f.Add("_@b:hs_B1_m.call", []byte(`{"application":"m.call","call_id":"","device_id":"B1","expires":1000,"created_ts":1700000000000,"focus_active":{"type":"org.matrix.msc3898","user_id":"@f:hs"},"foci_preferred":["@f:hs|F"]}`))
	f.Add("@d:hs", []byte(`{"memberships":[{"application":"m.call","call_id":"","device_id":"D","expires_ts":1e300}]}`))
	f.Add("@a:hs", []byte(`{"membership":"ban"}`))
	f.Add("_@a:hs_", []byte(`{}`))
	f.Add("@a:hs", []byte(`{"m.calls":[{"m.devices":[{"device_id":"X","expires_ts":-1e308,"m.foci.active":{"user_id":5}}]}]}`))
	f.Fuzz(func(t *testing.T, stateKey string, content []byte) {
		clk := newMemberClock()
		m := NewMemberships(clk.now)
		user, _, err := parseCallStateKey(stateKey)
		if err != nil {
			user = id.UserID(stateKey)
		}
		for _, typ := range []event.Type{StateCallMember, StateCallMemberUnstable, event.StateMember} {
			key := stateKey
			evt := &event.Event{Type: typ, Sender: user, StateKey: &key, RoomID: memberRoom, Timestamp: memberT0,
				Content: event.Content{VeryRaw: content}}
			cs, _ := m.Update(evt)
			for _, c := range cs {
				if c.Kind == MemberJoined {
					if _, ok := m.Lookup(memberRoom, c.Member.UserID, c.Member.DeviceID); !ok {
						t.Fatalf("joined %+v but Lookup misses it", c.Member)
					}
				}
			}
		}
		clk.advance(250 * 365 * 24 * time.Hour) // past every representable expiry
		m.Expire()
		m.ForgetRoom(memberRoom)
		if got := m.Members(memberRoom); len(got) != 0 {
			t.Fatalf("members after ForgetRoom: %+v", got)
		}
	})
}
