package server

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/livekit"
)

func TestShareRooms(t *testing.T) {
	sfu := focus.New(focus.Options{})
	defer sfu.Close()
	rooms := []config.SharedRoom{
		{WHIP: "lobby", ElementCall: "!abc:example.org"},
		{WHIP: "stage", LiveKit: "raw"},
		{WHIP: "stage2", LiveKit: "raw"},
	}
	if err := shareRooms(sfu, rooms, true, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	ec := livekit.RoomName("!abc:example.org", livekit.LegacySlotID)
	for whipRoom, lk := range map[string]string{"lobby": ec, "stage": "raw", "stage2": "raw"} {
		if got := sfu.Canonical(focus.ConferenceID("whip:" + whipRoom)); got != focus.ConferenceID("lk:"+lk) {
			t.Errorf("whip:%s resolves to %q, want lk:%s", whipRoom, got, lk)
		}
	}
	// Off, the entries do nothing.
	off := focus.New(focus.Options{})
	defer off.Close()
	if err := shareRooms(off, rooms, false, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if got := off.Canonical("whip:lobby"); got != "whip:lobby" {
		t.Errorf("with livekit off, whip:lobby resolves to %q", got)
	}
}
