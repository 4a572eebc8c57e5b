package matrix

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// The Focus counts each to-device message it is given once: m.call.*
// messages it takes, malformed or unacceptable ones, and other types.
func TestFocusToDeviceStats(t *testing.T) {
	h := newHarness(t)
	b := CallBase{CallID: "c1", ConfID: "conf", PartyID: "X", DeviceID: "X", SenderSessionID: "s", Version: "1"}
	b.SetSeq(0)
	h.toDevice("@stranger:hs", TypeInvite.Type, &Invite{CallBase: b, Offer: SessionDescription{Type: "offer", SDP: "v=0"}})
	h.toDevice("@stranger:hs", TypeCandidates.Type, &Candidates{CallBase: b})
	h.toDevice("@stranger:hs", TypeInvite.Type, map[string]any{"call_id": "c2", "party_id": "Q", "device_id": "Q"}) // no offer
	h.toDevice("@stranger:hs", TypeAnswer.Type, &Answer{CallBase: b, Answer: SessionDescription{Type: "answer", SDP: "v=0"}})
	h.toDevice("@stranger:hs", "m.room_key", map[string]any{})
	h.sender.wait(t, "X", TypeHangup.Type)

	want := ToDeviceStats{Handled: 2, Failed: 2, Ignored: 1}
	if got := h.f.ToDeviceStats(); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}

// The Transport counts the messages it sends, those it fails to send,
// and encrypted ones it cannot pass on.
func TestTransportToDeviceStats(t *testing.T) {
	hs := newFakeHS(t)
	r := startTransport(t, testConfig(hs.srv.URL, t.TempDir()))
	r.waitReady(t)
	enc := toDeviceEvent("m.room.encrypted", testAlice, map[string]any{"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": map[string]any{}})
	if code, _ := r.putTxn(t, "1", map[string]any{"events": []any{}, "to_device": []any{enc}}); code != 200 {
		t.Fatal("refused")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ := event.Type{Type: TypeHangup.Type, Class: event.ToDeviceEventType}
	if err := r.t.SendToDevice(ctx, testAlice, id.DeviceID("D"), typ, map[string]any{"call_id": "c"}); err != nil {
		t.Fatal(err)
	}
	if err := r.t.SendToDevice(ctx, testAlice, id.DeviceID("D"), typ, make(chan int)); err == nil {
		t.Fatal("a message that cannot be encoded was sent")
	}
	want := ToDeviceStats{Failed: 1, Sent: 1, SendFailed: 1}
	if got := r.t.ToDeviceStats(); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if sum := want.Add(ToDeviceStats{Handled: 2, Failed: 1}); sum != (ToDeviceStats{Handled: 2, Failed: 2, Sent: 1, SendFailed: 1}) {
		t.Fatalf("Add: %+v", sum)
	}
}
