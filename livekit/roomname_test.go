package livekit

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// The vectors were computed with Node's JSON.stringify, crypto's SHA-256
// and base64 without padding: what matrix-js-sdk does. The first two are
// MSC4195's test vectors, which lk-jwt-service's tests also check.
func TestRoomNameVectors(t *testing.T) {
	tests := []struct {
		room id.RoomID
		slot string
		want string
	}{
		{"!roomid:example.com", "slot1234", "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc"},
		{"!abc:localhost", LegacySlotID, "Ax8rZVh6N6GSgRoDmH1XeQktdUAHYWOzZN/v8XAxH5k"},
		// JSON.stringify keeps <, > and & as they are (Go's json.Marshal
		// would escape them, and hash differently).
		{"!a<b>&c:example.org", LegacySlotID, "+i4WHmxOVfdSfFV+gM6DdLfTzkvWUho9HE1jkszDhbs"},
		{"!r\u00e9\u00fcm:example.org", "sl\"ot\\\n\t\b\f\r\x01\x1f\x7f", "Rxrn4hf7BrSaJ3eeYJ/MgiG/uIvhe/ZPzPb4Xx2Mmt4"},
	}
	for _, tt := range tests {
		if got := RoomName(tt.room, tt.slot); got != tt.want {
			t.Errorf("RoomName(%q, %q) = %s, want %s", tt.room, tt.slot, got, tt.want)
		}
	}
}

func TestMemberIdentityVectors(t *testing.T) {
	tests := []struct {
		user         id.UserID
		device       id.DeviceID
		member, want string
	}{
		{"@alice:example.com", "DEVICE123", "memberABC", "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU"},
		// U+2028 and U+2029 are not escaped by JSON.stringify either.
		{"@bob:example.org", "DEV\u2028ICE", "m\u2029ember", "nueaFaulBr7GQ8ooBHC7Z07/5aP/f9ZlGxBmVS14XRc"},
		{"@\U0001F600:example.org", "D", "x", "fhQYnUWVTwJ6nNZHKVxLEKM7qrUfR5xq5iqibSn5wZY"},
	}
	for _, tt := range tests {
		if got := MemberIdentity(tt.user, tt.device, tt.member); got != tt.want {
			t.Errorf("MemberIdentity(%q, %q, %q) = %s, want %s", tt.user, tt.device, tt.member, got, tt.want)
		}
	}
}

func TestLegacyIdentity(t *testing.T) {
	if got := LegacyIdentity("@alice:example.org", "ABCDEF"); got != "@alice:example.org:ABCDEF" {
		t.Errorf("LegacyIdentity = %q", got)
	}
}

func TestRoomNameShape(t *testing.T) {
	seen := map[string][2]string{}
	for _, c := range [][2]string{
		{"!a:example.org", LegacySlotID},
		{"!b:example.org", LegacySlotID},
		{"!a:example.org", "m.call#OTHER"},
		// The JSON array keeps the two parts apart: no concatenation
		// collides.
		{"!a:example.org\",\"m.call#ROOM", ""},
		{"", ""},
	} {
		name := RoomName(id.RoomID(c[0]), c[1])
		if len(name) != 43 || strings.ContainsAny(name, "=-_") {
			t.Errorf("RoomName(%q, %q) = %q: want 43 characters of standard unpadded base64", c[0], c[1], name)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("RoomName collision: %q and %q", prev, c)
		}
		seen[name] = c
	}
}

// TestJSONStringsMatchesEncodingJSON: apart from the five characters Go
// escapes for HTML, the encoding is json.Marshal's, so lk-jwt-service and
// the focus agree on every ordinary identifier.
func TestJSONStringsMatchesEncodingJSON(t *testing.T) {
	var all []string
	for c := range 0x80 {
		if !strings.ContainsRune("<>&", rune(c)) {
			all = append(all, string(rune(c)))
		}
	}
	all = append(all, "!room:example.org", "m.call#ROOM", "é", "\U0001F600", "\x7f", "")
	for _, s := range all {
		want, _ := json.Marshal([]string{s, s})
		if got := jsonStrings([]string{s, s}); string(got) != string(want) {
			t.Errorf("jsonStrings(%q) = %s, json.Marshal = %s", s, got, want)
		}
	}
}

// FuzzJSONStrings: the encoding is always JSON that decodes to the same
// strings (invalid UTF-8 replaced, as encoding/json does), and is
// json.Marshal's output whenever no HTML-escaped character is involved.
func FuzzJSONStrings(f *testing.F) {
	f.Add("!room:example.org", "m.call#ROOM", "")
	f.Add("a\"b\\c", "\x00\x1f\x7f", "\u2028<&>")
	f.Add("\xff\xfe", "é", "\U0001F600")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		in := []string{a, b, c}
		got := jsonStrings(in)
		var back []string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("jsonStrings(%q) = %s: not JSON: %v", in, got, err)
		}
		for i := range in {
			if want := strings.ToValidUTF8(in[i], "\uFFFD"); back[i] != want && utf8.ValidString(in[i]) {
				t.Fatalf("round trip of %q gave %q", in[i], back[i])
			}
		}
		if !slices.ContainsFunc(in, func(s string) bool { return strings.ContainsAny(s, "<>&\u2028\u2029") || !utf8.ValidString(s) }) {
			want, _ := json.Marshal(in)
			if string(got) != string(want) {
				t.Fatalf("jsonStrings(%q) = %s, json.Marshal = %s", in, got, want)
			}
		}
	})
}
