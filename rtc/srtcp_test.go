package rtc

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// gcmKeys returns a random master key and salt of profile.
func gcmKeys(t testing.TB, rng *rand.Rand, profile srtp.ProtectionProfile) (key, salt []byte) {
	t.Helper()
	keyLen, err := profile.KeyLen()
	if err != nil {
		t.Fatal(err)
	}
	saltLen, err := profile.SaltLen()
	if err != nil {
		t.Fatal(err)
	}
	key, salt = make([]byte, keyLen), make([]byte, saltLen)
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	for i := range salt {
		salt[i] = byte(rng.Uint32())
	}
	return key, salt
}

// someRTCP returns a few compound RTCP packets of the kinds subscribers
// send, from sender ssrc.
func someRTCP(t testing.TB, ssrc uint32) [][]byte {
	t.Helper()
	// pion marshals transport-wide feedback with the header it is given.
	twcc := &rtcp.TransportLayerCC{SenderSSRC: ssrc, MediaSSRC: 5, BaseSequenceNumber: 1, PacketStatusCount: 1,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 1}},
		RecvDeltas:   []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}}}
	twcc.Header = rtcp.Header{Padding: true, Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback, Length: uint16(twcc.MarshalSize()/4 - 1)}
	var out [][]byte
	for _, c := range [][]rtcp.Packet{
		{twcc},
		{&rtcp.ReceiverReport{SSRC: ssrc, Reports: []rtcp.ReceptionReport{{SSRC: 5, LastSequenceNumber: 77}}},
			&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: ssrc, Bitrate: 1e6, SSRCs: []uint32{5}}},
		{&rtcp.ReceiverReport{SSRC: ssrc}, &rtcp.TransportLayerNack{SenderSSRC: ssrc, MediaSSRC: 5, Nacks: []rtcp.NackPair{{PacketID: 9}}}},
		{&rtcp.PictureLossIndication{SenderSSRC: ssrc, MediaSSRC: 5}},
		{&rtcp.SenderReport{SSRC: ssrc, NTPTime: 1 << 40, PacketCount: 3}},
	} {
		b, err := rtcp.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestSRTCPOpenerMatchesPion: what pion's srtp.Context encrypts as SRTCP,
// for both GCM key lengths and two senders interleaved, the focus's
// opener decrypts to the same RTCP; it refuses each packet a second
// time, a packet altered in any byte, one under another key, one sent
// unencrypted, and senders past its bound.
func TestSRTCPOpenerMatchesPion(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm} {
		key, salt := gcmKeys(t, rng, profile)
		sender, err := srtp.CreateContext(key, salt, profile)
		if err != nil {
			t.Fatal(err)
		}
		open, err := newSRTCPOpener(key, salt)
		if err != nil {
			t.Fatal(err)
		}
		var plain, sealed [][]byte
		for round := 0; round < 30; round++ {
			for _, ssrc := range []uint32{0x1234, 0xfeedbeef} {
				for _, p := range someRTCP(t, ssrc) {
					s, err := sender.EncryptRTCP(nil, p, nil)
					if err != nil {
						t.Fatal(err)
					}
					plain, sealed = append(plain, p), append(sealed, s)
				}
			}
		}
		dst := make([]byte, 1500)
		for i, s := range sealed {
			got, err := open.open(dst, s)
			if err != nil {
				t.Fatalf("%v: packet %d: %v", profile, i, err)
			}
			if !bytes.Equal(got, plain[i]) {
				t.Fatalf("%v: packet %d decrypts to %x, want %x", profile, i, got, plain[i])
			}
		}
		for i, s := range sealed[len(sealed)-10:] {
			if _, err := open.open(dst, s); !errors.Is(err, errSRTCPReplay) {
				t.Fatalf("%v: packet %d again: %v, want a replay", profile, i, err)
			}
		}

		// Every byte altered, of a packet not yet taken.
		s, err := sender.EncryptRTCP(nil, plain[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range s {
			bad := bytes.Clone(s)
			bad[i] ^= 0x01
			if _, err := open.open(dst, bad); err == nil {
				t.Fatalf("%v: byte %d altered: taken", profile, i)
			}
		}
		if _, err := open.open(dst, s); err != nil {
			t.Fatalf("%v: the packet unaltered, after its altered copies: %v", profile, err)
		}

		otherKey, otherSalt := gcmKeys(t, rng, profile)
		other, err := srtp.CreateContext(otherKey, otherSalt, profile)
		if err != nil {
			t.Fatal(err)
		}
		s, err = other.EncryptRTCP(nil, plain[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := open.open(dst, s); !errors.Is(err, errSRTCPAuth) {
			t.Fatalf("%v: another key's packet: %v, want an authentication failure", profile, err)
		}

		clear, err := srtp.CreateContext(key, salt, profile, srtp.SRTCPNoEncryption())
		if err != nil {
			t.Fatal(err)
		}
		s, err = clear.EncryptRTCP(nil, plain[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := open.open(dst, s); !errors.Is(err, errSRTCPUnencrypted) {
			t.Fatalf("%v: an unencrypted packet: %v, want it refused as unencrypted", profile, err)
		}
		// Past maxSRTCPSenders new senders are left to pion; known
		// ones are still taken.
		for ssrc := uint32(1); ; ssrc++ {
			p, err := sender.EncryptRTCP(nil, someRTCP(t, ssrc)[0], nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = open.open(dst, p)
			if errors.Is(err, errSRTCPSenders) {
				if len(open.senders) != maxSRTCPSenders {
					t.Fatalf("%v: senders refused after %d, want %d", profile, len(open.senders), maxSRTCPSenders)
				}
				break
			}
			if err != nil {
				t.Fatalf("%v: sender %d: %v", profile, ssrc, err)
			}
		}
		known, err := sender.EncryptRTCP(nil, plain[1], nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := open.open(dst, known); err != nil {
			t.Fatalf("%v: a known sender's packet, with the list full: %v", profile, err)
		}
		for n := range srtcpHeaderSize + gcmTagSize + srtcpIndexSize {
			if _, err := open.open(dst, s[:n]); !errors.Is(err, errSRTCPShort) {
				t.Fatalf("%v: %d bytes: %v, want too short", profile, n, err)
			}
		}
	}
}

// TestSRTCPWindow: a sender's packets are taken once each, in any order
// within the window of 64, and not at all from further behind; across
// the 31-bit index's wrap too.
func TestSRTCPWindow(t *testing.T) {
	for _, start := range []uint32{0, 1000, 0x7fffffff - 20} {
		var w srtcpWindow
		at := func(i int) uint32 { return (start + uint32(i)) & 0x7fffffff }
		take := func(i int, want bool) {
			t.Helper()
			if got := w.fresh(at(i)); got != want {
				t.Fatalf("start %d: index +%d fresh %v, want %v", start, i, got, want)
			}
			if want {
				w.take(at(i))
			}
		}
		take(10, true)
		take(10, false)
		take(5, true) // behind, in the window
		take(5, false)
		take(40, true)
		take(11, true)
		take(30, true)
		take(30, false)
		take(200, true) // far ahead: the window moves past the others
		take(130, false)
		take(137, true)
		take(137, false)
		take(201, true)
		take(200, false)
	}
}

// TestDirectPathReceive: a connection's direct path takes the SRTCP of
// transport-wide feedback, REMB and receiver reports, and feeds the
// estimator; it leaves to pion, untouched, compounds with a sender
// report, NACK or PLI, packets under another key and unencrypted ones;
// it drops a replay of what it opened, and takes nothing with a profile
// that is not GCM.
func TestDirectPathReceive(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	profile := srtp.ProtectionProfileAeadAes128Gcm
	key, salt := gcmKeys(t, rng, profile)
	open, err := newSRTCPOpener(key, salt)
	if err != nil {
		t.Fatal(err)
	}
	est := newEstimator()
	p := &directPath{est: est, open: open}
	remote, err := srtp.CreateContext(key, salt, profile)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(b []byte) []byte {
		s, err := remote.EncryptRTCP(nil, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	scratch := make([]byte, 1500)
	receive := func(pkt []byte, want rtcpVerdict) {
		t.Helper()
		before := bytes.Clone(pkt)
		if got := p.receive(pkt, scratch); got != want {
			t.Fatalf("verdict %d, want %d", got, want)
		}
		if want == rtcpLeft && !bytes.Equal(pkt, before) {
			t.Fatal("a packet left to pion was changed")
		}
	}
	kinds := someRTCP(t, 0x42)
	twcc, remb, nack, pli, sr := seal(kinds[0]), seal(kinds[1]), seal(kinds[2]), seal(kinds[3]), seal(kinds[4])

	receive(twcc, rtcpTaken)
	if !est.twcc.Load() {
		t.Fatal("transport-wide feedback taken did not reach the estimator")
	}
	receive(remb, rtcpTaken)
	if got := est.remb.Load(); got != 1e6 {
		t.Fatalf("REMB taken: the estimator has %d bit/s, want 1000000", got)
	}
	if got, bytes := p.received.Load(), p.receivedBytes.Load(); got != 2 || bytes != uint64(len(twcc)+len(remb)) {
		t.Fatalf("the path counts %d packets and %d bytes taken, want 2 and %d", got, bytes, len(twcc)+len(remb))
	}
	receive(nack, rtcpLeft)
	receive(pli, rtcpLeft)
	receive(sr, rtcpLeft)

	receive(twcc, rtcpReplay)
	receive(nack, rtcpReplay) // opened once already, though left to pion
	if p.received.Load() != 2 {
		t.Fatalf("after replays the path counts %d packets taken, want 2", p.received.Load())
	}

	otherKey, otherSalt := gcmKeys(t, rng, profile)
	other, err := srtp.CreateContext(otherKey, otherSalt, profile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := other.EncryptRTCP(nil, kinds[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	receive(s, rtcpLeft)
	receive(seal([]byte{0x80, 201, 0, 1, 0, 0, 0, 0x42}), rtcpTaken) // a bare receiver report
	// A malformed compound, well sealed: pion's, which refuses it as before.
	receive(seal([]byte{0x80, 201, 0, 9, 0, 0, 0, 0x42}), rtcpLeft)

	// Taking feedback allocates nothing.
	fresh := make([][]byte, 300)
	for i := range fresh {
		fresh[i] = seal(kinds[0])
	}
	next := 0
	if allocs := testing.AllocsPerRun(200, func() {
		if p.receive(fresh[next], scratch) != rtcpTaken {
			t.Fatal("feedback not taken")
		}
		next++
	}); allocs != 0 {
		t.Fatalf("%v allocations per packet taken", allocs)
	}

	none := &directPath{est: est}
	if none.receive(seal(kinds[0]), scratch) != rtcpLeft {
		t.Fatal("a path without an opener (not GCM) took a packet")
	}
}

// FuzzSRTCPOpen: whatever arrives from a subscriber's address, sealed or
// not, the direct path neither panics nor hands the estimator anything
// that did not authenticate; and a compound sealed under the right key
// is taken exactly when it holds feedback only.
func FuzzSRTCPOpen(f *testing.F) {
	for _, p := range someRTCP(f, 7) {
		f.Add(p, true)
	}
	f.Add([]byte{0x80, 201, 0, 1, 0, 0, 0, 7}, false)
	f.Add(make([]byte, 40), false)
	key, salt := make([]byte, 16), make([]byte, 12)
	f.Fuzz(func(t *testing.T, b []byte, sealIt bool) {
		open, err := newSRTCPOpener(key, salt)
		if err != nil {
			t.Fatal(err)
		}
		p := &directPath{est: newEstimator(), open: open}
		pkt, sealed := b, false
		if sealIt && len(b) >= srtcpHeaderSize && len(b) <= 1400 {
			remote, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
			if err != nil {
				t.Fatal(err)
			}
			// pion seals only what it reads as RTCP (version 2); what it
			// refuses is offered as it is.
			if s, err := remote.EncryptRTCP(nil, b, nil); err == nil {
				pkt, sealed = s, true
			}
		}
		taken := p.receive(pkt, make([]byte, 1500)) == rtcpTaken
		if sealed {
			want := b[1] != ptSenderReport && feedbackOnly(b)
			if taken != want {
				t.Fatalf("%x sealed: taken %v, want %v", b, taken, want)
			}
		} else if taken {
			t.Fatalf("%x, never sealed: taken", b)
		}
	})
}
