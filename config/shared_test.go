package config_test

import (
	"testing"

	"github.com/focus-sfu/focus/config"
)

func TestValidateSharedRooms(t *testing.T) {
	tests := []struct {
		name  string
		rooms []config.SharedRoom
		key   string // "" = valid
		msg   string
	}{
		{"element call", []config.SharedRoom{{WHIP: "lobby", ElementCall: "!abc:example.org"}}, "", ""},
		{"livekit", []config.SharedRoom{{WHIP: "lobby", LiveKit: "room"}, {WHIP: "stage", LiveKit: "room"}}, "", ""},
		{"no whip", []config.SharedRoom{{LiveKit: "room"}}, "shared_rooms[0].whip", `config: shared_rooms[0].whip: must not be empty`},
		{"bad whip", []config.SharedRoom{{WHIP: "a/b", LiveKit: "room"}}, "shared_rooms[0].whip", `config: shared_rooms[0].whip: "a/b" has a forbidden character '/' (allowed: letters, digits, - _ . ~)`},
		{"duplicate whip", []config.SharedRoom{{WHIP: "a", LiveKit: "x"}, {WHIP: "a", LiveKit: "y"}}, "shared_rooms[1].whip", `config: shared_rooms[1].whip: "a" is already shared by shared_rooms[0]`},
		{"neither", []config.SharedRoom{{WHIP: "a"}}, "shared_rooms[0]", `config: shared_rooms[0]: set element_call (a Matrix room ID) or livekit (a LiveKit room name)`},
		{"both", []config.SharedRoom{{WHIP: "a", LiveKit: "x", ElementCall: "!r:hs"}}, "shared_rooms[0]", `config: shared_rooms[0]: set element_call or livekit, not both`},
		{"room alias", []config.SharedRoom{{WHIP: "a", ElementCall: "#r:hs"}}, "shared_rooms[0].element_call", `config: shared_rooms[0].element_call: "#r:hs" is not a Matrix room ID ("!abc:example.org"); aliases (#room:server) are not resolved`},
		{"livekit with space", []config.SharedRoom{{WHIP: "a", LiveKit: "x y"}}, "shared_rooms[0].livekit", `config: shared_rooms[0].livekit: must not contain spaces or control characters`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			c.SharedRooms = tc.rooms
			err := c.Validate()
			if tc.key == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			checkError(t, err, tc.key, tc.msg)
		})
	}
}

func TestParseSharedRooms(t *testing.T) {
	c, err := config.Parse([]byte("shared_rooms:\n  - whip: lobby\n    livekit: room\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SharedRooms) != 1 || c.SharedRooms[0] != (config.SharedRoom{WHIP: "lobby", LiveKit: "room"}) {
		t.Fatalf("shared_rooms = %+v", c.SharedRooms)
	}
	_, err = config.Parse([]byte("shared_rooms:\n  - whip: lobby\n    room: x\n"))
	checkError(t, err, "shared_rooms[0].room", `config: unknown key "shared_rooms[0].room"`)
}
