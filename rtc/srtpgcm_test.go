package rtc

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// TestGCMSealerMatchesPion: the focus's own GCM sealer writes, byte for
// byte, the SRTP packets pion's srtp.Context writes for the same keys
// and packets: both key lengths, headers with extensions and CSRCs, two
// streams interleaved, sequence numbers that wrap, jumps, and packets
// sent again from before and after a wrap. A receiver (pion's decrypting
// context) takes every one.
func TestGCMSealerMatchesPion(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm} {
		keyLen, err := profile.KeyLen()
		if err != nil {
			t.Fatal(err)
		}
		key, salt := make([]byte, keyLen), make([]byte, saltLen(t, profile))
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		for i := range salt {
			salt[i] = byte(rng.Uint32())
		}
		ours, err := newGCMSealer(key, salt)
		if err != nil {
			t.Fatal(err)
		}
		pion, err := srtp.CreateContext(key, salt, profile)
		if err != nil {
			t.Fatal(err)
		}
		receiver, err := srtp.CreateContext(key, salt, profile)
		if err != nil {
			t.Fatal(err)
		}

		type pkt struct {
			ssrc uint32
			seq  uint16
		}
		var pkts []pkt
		// Stream 1 wraps, then sends again from before and after the
		// wrap; stream 2 is interleaved and jumps.
		for i := 0; i < 20; i++ {
			pkts = append(pkts, pkt{1, uint16(65530 + i)}, pkt{2, uint16(100 + i)})
		}
		pkts = append(pkts, pkt{1, 65532}, pkt{1, 2}, pkt{1, 14}, pkt{2, 1200}, pkt{2, 119}, pkt{1, 15})
		// Stream 3 runs a full wrap and more in random steps forward,
		// with retransmissions of recent packets.
		seq := uint16(rng.Uint32())
		for i := 0; i < 3000; i++ {
			if rng.IntN(10) == 0 {
				pkts = append(pkts, pkt{3, seq - uint16(rng.IntN(200))})
				continue
			}
			seq += uint16(1 + rng.IntN(60))
			pkts = append(pkts, pkt{3, seq})
		}

		var header rtp.Header
		for i, p := range pkts {
			h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: p.seq, Timestamp: uint32(i) * 3000, SSRC: p.ssrc, Marker: i%3 == 0}
			if i%2 == 0 {
				h.CSRC = []uint32{uint32(i)}
			}
			if i%4 < 2 {
				if err := h.SetExtension(3, []byte{byte(i), byte(i >> 8)}); err != nil {
					t.Fatal(err)
				}
			}
			payload := make([]byte, rng.IntN(1200))
			for j := range payload {
				payload[j] = byte(rng.Uint32())
			}

			var buf [slotSize]byte
			n, err := h.MarshalTo(buf[:])
			if err != nil {
				t.Fatal(err)
			}
			got, err := ours.seal(buf[:], n, &h, payload)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			want, err := pion.EncryptRTP(nil, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%v, packet %d (SSRC %d, seq %d): ours differs from pion's", profile, i, p.ssrc, p.seq)
			}
			dec, err := receiver.DecryptRTP(nil, got, &header)
			if err != nil {
				t.Fatalf("%v, packet %d (SSRC %d, seq %d): the receiver refused it: %v", profile, i, p.ssrc, p.seq, err)
			}
			if !bytes.Equal(dec, plain) {
				t.Fatalf("%v, packet %d: decrypted to something else", profile, i)
			}
		}
	}
}

// TestGCMSealerRefuses: wrong key and salt lengths, and a packet with no
// room for its tag, are errors.
func TestGCMSealerRefuses(t *testing.T) {
	if _, err := newGCMSealer(make([]byte, 15), make([]byte, 12)); err == nil {
		t.Error("a 15-byte master key was taken")
	}
	if _, err := newGCMSealer(make([]byte, 16), make([]byte, 14)); err == nil {
		t.Error("a 14-byte master salt was taken")
	}
	s, err := newGCMSealer(make([]byte, 16), make([]byte, 12))
	if err != nil {
		t.Fatal(err)
	}
	h := rtp.Header{Version: 2, SSRC: 1}
	buf := make([]byte, 100)
	n, err := h.MarshalTo(buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.seal(buf, n, &h, make([]byte, 100-n-15)); err == nil {
		t.Error("a packet with no room for its tag was sealed")
	}
}

// BenchmarkSeal compares the focus's GCM sealer with pion's context on a
// 1000-byte payload behind a header with one extension.
func BenchmarkSeal(b *testing.B) {
	for _, which := range []string{"ours", "pion"} {
		b.Run(which, func(b *testing.B) {
			var s sealer
			var err error
			if which == "ours" {
				s, err = newGCMSealer(make([]byte, 16), make([]byte, 12))
			} else {
				var ctx *srtp.Context
				ctx, err = srtp.CreateContext(make([]byte, 16), make([]byte, 12), srtp.ProtectionProfileAeadAes128Gcm)
				s = newPionSealer(ctx)
			}
			if err != nil {
				b.Fatal(err)
			}
			h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 7}
			if err := h.SetExtension(3, []byte{0, 1}); err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 1000)
			var buf [slotSize]byte
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				h.SequenceNumber++
				n, _ := h.MarshalTo(buf[:])
				if _, err := s.seal(buf[:], n, &h, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
