package livekit

import (
	"crypto/sha256"
	"encoding/base64"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// LegacySlotID is the MatrixRTC slot of /sfu/get, which names only a room:
// Element Call's one call per room.
const LegacySlotID = "m.call#ROOM"

// RoomName is the LiveKit room of a MatrixRTC slot in a Matrix room:
// unpadded base64 of the SHA-256 of the JSON array [room_id, slot_id]
// (MSC4195). The name hides the Matrix room from the SFU, and both token
// endpoints map a slot to the same room.
func RoomName(room id.RoomID, slot string) string {
	return hashStrings(string(room), slot)
}

// MemberIdentity is the LiveKit identity of a MatrixRTC member as /get_token
// gives it: unpadded base64 of the SHA-256 of the JSON array
// [user_id, device_id, member_id]. matrix-js-sdk computes the same
// (computeRtcIdentityRaw), which is how clients map a participant to its
// member.
func MemberIdentity(user id.UserID, device id.DeviceID, member string) string {
	return hashStrings(string(user), string(device), member)
}

// LegacyIdentity is the LiveKit identity /sfu/get gives:
// @user:server:DEVICE, what Element Call expects of legacy members.
func LegacyIdentity(user id.UserID, device id.DeviceID) string {
	return string(user) + ":" + string(device)
}

// hashStrings is unpaddedBase64(sha256(JSON array of ss)).
func hashStrings(ss ...string) string {
	sum := sha256.Sum256(jsonStrings(ss))
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

// jsonStrings encodes ss as a JSON array the way JavaScript's
// JSON.stringify does, which for strings is also Matrix canonical JSON: no
// spaces, UTF-8 kept as it is, and only '"', '\\' and control characters
// escaped (\b \t \n \f \r by name, the rest as \u00xx). MSC4195 asks for
// canonical JSON, and matrix-js-sdk hashes JSON.stringify's output.
// lk-jwt-service hashes Go's json.Marshal instead, which also escapes <, >,
// &, U+2028 and U+2029; identifiers without those five characters hash the
// same either way.
func jsonStrings(ss []string) []byte {
	n := 2
	for _, s := range ss {
		n += len(s) + 3
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			// Invalid UTF-8 cannot arrive here through encoding/json, which
			// replaces it; keep the same replacement for direct callers.
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				b = append(b, c)
			}
		}
		i++
	}
	return append(b, '"')
}
