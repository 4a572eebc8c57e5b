package cascade

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
)

func TestExtRemap(t *testing.T) {
	const (
		mid   = "urn:ietf:params:rtp-hdrext:sdes:mid"
		level = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
		twcc  = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
		other = "urn:example:other"
	)
	want := []focus.HeaderExtension{{ID: 1, URI: mid}, {ID: 9, URI: level}, {ID: 10, URI: twcc}}
	if r := newExtRemap([]webrtc.RTPHeaderExtensionParameter{{ID: 1, URI: mid}, {ID: 9, URI: level}}, want); r != nil {
		t.Fatal("a remap for extensions numbered alike")
	}
	negotiated := []webrtc.RTPHeaderExtensionParameter{{ID: 1, URI: mid}, {ID: 2, URI: level}, {ID: 3, URI: twcc}, {ID: 4, URI: other}}
	r := newExtRemap(negotiated, want)
	if r == nil {
		t.Fatal("no remap for extensions numbered otherwise")
	}
	for _, twoByte := range []bool{false, true} {
		h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 7, SSRC: 1, CSRC: []uint32{5}}
		if twoByte {
			h.Extension, h.ExtensionProfile = true, 0x1000
		}
		for _, e := range []struct {
			id   uint8
			data []byte
		}{{1, []byte("m")}, {2, []byte{0x85}}, {3, []byte{0, 1}}, {4, []byte{1, 2, 3}}} {
			if err := h.SetExtension(e.id, e.data); err != nil {
				t.Fatal(err)
			}
		}
		pkt, err := (&rtp.Packet{Header: h, Payload: []byte{1, 2, 3}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		r.apply(pkt)
		var got rtp.Packet
		if err := got.Unmarshal(pkt); err != nil {
			t.Fatal(err)
		}
		for id, data := range map[uint8][]byte{1: []byte("m"), 9: {0x85}, 10: {0, 1}, 14: {1, 2, 3}} {
			if string(got.GetExtension(id)) != string(data) {
				t.Errorf("two-byte %v: extension %d is %v, want %v", twoByte, id, got.GetExtension(id), data)
			}
		}
		if got.GetExtension(2) != nil || got.GetExtension(3) != nil || string(got.Payload) != "\x01\x02\x03" {
			t.Errorf("two-byte %v: %v", twoByte, got)
		}
	}
	// Truncated and extension-less packets are left alone, without panic.
	for _, p := range [][]byte{nil, {0x90}, {0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9}, make([]byte, 12)} {
		r.apply(p)
	}
}

// FuzzExtRemap: renumbering never panics on what arrives from the
// network, and never changes a packet's length or anything before its
// extensions.
func FuzzExtRemap(f *testing.F) {
	r := newExtRemap([]webrtc.RTPHeaderExtensionParameter{{ID: 2, URI: "a"}, {ID: 3, URI: "b"}, {ID: 200, URI: "c"}},
		[]focus.HeaderExtension{{ID: 5, URI: "a"}, {ID: 1, URI: "b"}})
	f.Add([]byte{0x90, 0x6f, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 0x20, 0x85, 0, 0})
	f.Add([]byte{0x90, 0x6f, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0x10, 0x00, 0, 1, 200, 1, 9, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := append([]byte(nil), pkt...)
		r.apply(pkt)
		if len(pkt) != len(before) || len(pkt) >= 16 && string(pkt[:16]) != string(before[:16]) {
			t.Fatalf("%x became %x", before, pkt)
		}
	})
}
