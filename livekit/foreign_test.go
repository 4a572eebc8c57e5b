package livekit

import (
	"testing"

	"github.com/livekit/protocol/livekit"

	"github.com/focus-sfu/focus/focus"
)

func TestForeignInfo(t *testing.T) {
	sfu := focus.New(focus.Options{})
	defer sfu.Close()
	if err := sfu.Alias("whip:lobby", "lk:room"); err != nil {
		t.Fatal(err)
	}
	part, err := sfu.Join("whip:lobby", focus.ParticipantInfo{ID: "0123456789abcdef0123", Identity: "whip", Role: focus.RoleIngress})
	if err != nil {
		t.Fatal(err)
	}
	video, err := part.Publish(focus.TrackInfo{Kind: focus.KindVideo, Codec: focus.Codec{MimeType: "video/VP8", ClockRate: 90000}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := part.Publish(focus.TrackInfo{Kind: focus.KindAudio, Codec: focus.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}}, nil); err != nil {
		t.Fatal(err)
	}

	info := foreignInfo(part, 3, livekit.ParticipantInfo_ACTIVE)
	if info.Sid != "PA_0123456789abcdef0123" || info.Identity != "whip-0123456789ab" || info.Name != "whip" ||
		info.Kind != livekit.ParticipantInfo_INGRESS || info.Version != 3 || !info.IsPublisher {
		t.Fatalf("info = %v", info)
	}
	if len(info.Tracks) != 2 {
		t.Fatalf("%d tracks", len(info.Tracks))
	}
	v, a := info.Tracks[0], info.Tracks[1]
	if v.Sid != string(video.ID()) || v.Type != livekit.TrackType_VIDEO || v.Source != livekit.TrackSource_CAMERA || v.MimeType != "video/VP8" || v.Muted {
		t.Errorf("video = %v", v)
	}
	if a.Type != livekit.TrackType_AUDIO || a.Source != livekit.TrackSource_MICROPHONE || a.MimeType != "audio/opus" {
		t.Errorf("audio = %v", a)
	}
	if gone := foreignInfo(part, 4, livekit.ParticipantInfo_DISCONNECTED); len(gone.Tracks) != 0 || gone.State != livekit.ParticipantInfo_DISCONNECTED {
		t.Errorf("gone = %v", gone)
	}
	// A LiveKit session keeps its own sid.
	lk, _ := sfu.Join("lk:room", focus.ParticipantInfo{ID: "PA_abc"})
	if got := participantSID(lk); got != "PA_abc" {
		t.Errorf("participantSID = %q", got)
	}
}

// A call member on another focus, shown by the cascade, keeps its own
// LiveKit identity and sid: Element Call maps tiles to members by them. An
// ingress on another focus is made unique like a local one.
func TestForeignInfoOfACascadeProxy(t *testing.T) {
	sfu := focus.New(focus.Options{})
	defer sfu.Close()
	member, err := sfu.Join("lk:room", focus.ParticipantInfo{ID: "PA_remote1", Identity: "@alice:example.org:DEVICE", Role: focus.RoleMember, Origin: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if info := foreignInfo(member, 1, livekit.ParticipantInfo_ACTIVE); info.Identity != "@alice:example.org:DEVICE" || info.Sid != "PA_remote1" || info.Kind != livekit.ParticipantInfo_STANDARD {
		t.Errorf("member proxy = %v", info)
	}
	ingress, err := sfu.Join("lk:room", focus.ParticipantInfo{ID: "fedcba9876543210", Identity: "whip", Role: focus.RoleIngress, Origin: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if info := foreignInfo(ingress, 1, livekit.ParticipantInfo_ACTIVE); info.Identity != "whip-fedcba987654" {
		t.Errorf("ingress proxy identity = %q", info.Identity)
	}
}
