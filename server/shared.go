package server

import (
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/livekit"
	"github.com/focus-sfu/focus/whip"
)

// shareRooms applies shared_rooms. Each WHIP room's name becomes an
// alias of its LiveKit room's: the LiveKit room (an Element Call call)
// is the canonical conference, which a broadcast camera joins as a
// guest. Several WHIP rooms may feed one LiveKit room; one WHIP room
// feeds one LiveKit room (an alias has one canonical name).
func shareRooms(sfu *focus.SFU, rooms []config.SharedRoom, liveKitEnabled bool, log zerolog.Logger) error {
	if len(rooms) > 0 && !liveKitEnabled {
		log.Warn().Int("shared_rooms", len(rooms)).Msg("shared_rooms has entries but livekit is off; they do nothing")
		return nil
	}
	for i, r := range rooms {
		lk := sharedLiveKitRoom(r)
		if err := sfu.Alias(whip.ConferenceID(r.WHIP), livekit.ConferenceID(lk)); err != nil {
			return fmt.Errorf("server: shared_rooms[%d]: %w", i, err)
		}
		ev := log.Info().Str("whip", r.WHIP).Str("livekit_room", lk)
		if r.ElementCall != "" {
			ev = ev.Str("element_call", r.ElementCall)
		}
		ev.Msg("shared room")
	}
	return nil
}

// sharedLiveKitRoom is the LiveKit room of a shared_rooms entry: the raw
// name, or the room of the Matrix room's Element Call call (slot
// m.call#ROOM, as both token endpoints name it).
func sharedLiveKitRoom(r config.SharedRoom) string {
	if r.ElementCall != "" {
		return livekit.RoomName(id.RoomID(r.ElementCall), livekit.LegacySlotID)
	}
	return r.LiveKit
}
