package dendrite

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// CallStateTypes are the state event types CreateRoom lets every member
// send (power level 0): call membership, legacy (MSC3401 m.call.member)
// and per-device (org.matrix.msc3401.call.member), and the MSC3401 call
// event under its stable and unstable names.
func CallStateTypes() []string {
	return []string{
		"m.call.member",
		"org.matrix.msc3401.call.member",
		"m.call",
		"org.matrix.msc3401.call",
	}
}

// CreateRoom creates a private room as creator, invites invitees, and
// returns its ID. The power levels let any member send CallStateTypes;
// everything else keeps Dendrite's defaults (state needs 50). Invitees
// still have to Join.
func (s *Server) CreateRoom(tb testing.TB, creator *User, invitees ...id.UserID) id.RoomID {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), requestTimeout)
	defer cancel()
	levels := map[string]int{}
	for _, t := range CallStateTypes() {
		levels[t] = 0
	}
	resp, err := creator.Client.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		Invite: invitees,
		// Dendrite decodes the override over its defaults, so this adds
		// to the default events map rather than replacing it.
		PowerLevelOverride: &event.PowerLevelsEventContent{Events: levels},
	})
	if err != nil {
		tb.Fatalf("dendrite: %s creates a room: %v", creator.ID, err)
	}
	return resp.RoomID
}
