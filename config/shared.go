package config

import (
	"fmt"
	"strings"
)

// SharedRoom puts a WHIP/WHEP room into a LiveKit room: the WHIP room's
// publishers appear to the LiveKit room's clients as participants, and
// its viewers see the LiveKit room's tracks. The LiveKit room is given
// by ElementCall (a Matrix room whose Element Call call it is) or by
// LiveKit (a raw LiveKit room name), not both. See
// docs/element-call.md#shared-rooms.
type SharedRoom struct {
	// WHIP is the WHIP/WHEP room name (/whip/<room>, /whep/<room>).
	WHIP string `yaml:"whip"`
	// ElementCall is a Matrix room ID ("!abc:example.org"); the LiveKit
	// room is the one Element Call's call in that room uses.
	ElementCall string `yaml:"element_call"`
	// LiveKit is a LiveKit room name as clients join it.
	LiveKit string `yaml:"livekit"`
}

// maxWHIPRoomLen is the whip front-end's longest room name.
const maxWHIPRoomLen = 128

// validateSharedRooms checks the entries; with livekit off they are
// checked all the same (the server warns that they do nothing).
func validateSharedRooms(rooms []SharedRoom) error {
	seen := make(map[string]int, len(rooms))
	for i, r := range rooms {
		key := indexKey("shared_rooms", i)
		if err := checkWHIPRoom(r.WHIP); err != nil {
			return errorf(key+".whip", err.Error())
		}
		if j, dup := seen[r.WHIP]; dup {
			return errorf(key+".whip", fmt.Sprintf("%q is already shared by shared_rooms[%d]", r.WHIP, j))
		}
		seen[r.WHIP] = i
		switch {
		case r.ElementCall == "" && r.LiveKit == "":
			return errorf(key, "set element_call (a Matrix room ID) or livekit (a LiveKit room name)")
		case r.ElementCall != "" && r.LiveKit != "":
			return errorf(key, "set element_call or livekit, not both")
		case r.ElementCall != "":
			if !strings.HasPrefix(r.ElementCall, "!") || len(r.ElementCall) < 2 || hasSpaceOrControl(r.ElementCall) {
				return errorf(key+".element_call", fmt.Sprintf("%q is not a Matrix room ID (\"!abc:example.org\"); aliases (#room:server) are not resolved", r.ElementCall))
			}
		default:
			if hasSpaceOrControl(r.LiveKit) {
				return errorf(key+".livekit", "must not contain spaces or control characters")
			}
		}
	}
	return nil
}

// checkWHIPRoom applies the whip front-end's rule for room names.
func checkWHIPRoom(room string) error {
	if room == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(room) > maxWHIPRoomLen {
		return fmt.Errorf("is longer than %d characters", maxWHIPRoomLen)
	}
	for _, c := range room {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return fmt.Errorf("%q has a forbidden character %q (allowed: letters, digits, - _ . ~)", room, c)
		}
	}
	return nil
}

func hasSpaceOrControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}
