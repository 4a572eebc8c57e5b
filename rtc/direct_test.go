package rtc

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
)

// TestDirectPathCarriesMedia forwards video to a plain pion viewer over a
// real connection, with the focus as DTLS server (the viewer offers) and
// as DTLS client (the focus offers and the viewer answers passive), and
// checks that the packets took the direct path, decrypt at the viewer and
// arrive once each, in order; that the viewer's feedback took the path
// in and its PLI pion's way; and that closing the connection stops the
// path.
func TestDirectPathCarriesMedia(t *testing.T) {
	for _, tc := range []struct {
		name        string
		focusOffers bool
	}{{"focus answers", false}, {"focus offers", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e, sfu, up, d := videoSubscription(t)

			var viewer *webrtc.PeerConnection
			if tc.focusOffers {
				viewer = plainPeer(t, func(se *webrtc.SettingEngine) error { return se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer) })
			} else {
				viewer = plainPeer(t)
			}
			got := make(chan uint16, 1000)
			ssrc := make(chan uint32, 1)
			viewer.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
				ssrc <- uint32(tr.SSRC())
				for {
					p, _, err := tr.ReadRTP()
					if err != nil {
						return
					}
					got <- binary.BigEndian.Uint16(p.Payload[len(p.Payload)-2:])
				}
			})
			focusPC, err := e.NewPeerConnection()
			if err != nil {
				t.Fatal(err)
			}
			defer focusPC.Close()
			lt := NewLocalTrack(d, "video", "s", focusPC, zerolog.Nop())
			if tc.focusOffers {
				if _, err := focusPC.AddTransceiverFromTrack(lt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
					t.Fatal(err)
				}
				negotiate(t, focusPC.PeerConnection, viewer, nil)
			} else {
				if _, err := viewer.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
					t.Fatal(err)
				}
				negotiate(t, viewer, focusPC.PeerConnection, func() {
					if _, err := focusPC.AddTrack(lt); err != nil {
						t.Fatal(err)
					}
				})
			}

			deadline := time.Now().Add(10 * time.Second)
			for p := focusPC.est.direct.Load(); p == nil || !p.hasRemote(); p = focusPC.est.direct.Load() {
				if time.Now().After(deadline) {
					t.Fatal("the direct path never came up")
				}
				time.Sleep(10 * time.Millisecond)
			}
			statsBefore := e.SocketStats()
			before, _ := focusPC.Traffic()
			payload := func(key bool, n uint16) []byte {
				b := []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0}
				if !key {
					b[3] = 0x01 // P bit set: not a keyframe
				}
				return binary.BigEndian.AppendUint16(b, n)
			}
			var seq uint16
			send := func(key bool, n uint16) {
				p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 1, Marker: true}, Payload: payload(key, n)}
				seq++
				b, _ := p.Marshal()
				if err := up.HandleRTP(0, b); err != nil {
					t.Fatal(err)
				}
			}
			// Keyframes until the viewer has one, then numbered frames.
			for first := false; !first; {
				send(true, 0)
				select {
				case <-got:
					first = true
				case <-time.After(50 * time.Millisecond):
					if time.Now().After(deadline) {
						t.Fatal("the viewer received nothing")
					}
				}
			}
			for n := uint16(1); n <= 100; n++ {
				send(false, n)
			}
			for want := uint16(1); want <= 100; {
				select {
				case n := <-got:
					if n == 0 {
						continue // a late keyframe
					}
					if n != want {
						t.Fatalf("frame %d arrived, want %d", n, want)
					}
					want++
				case <-time.After(5 * time.Second):
					t.Fatalf("frames after %d never arrived", want-1)
				}
			}
			select {
			case n := <-got:
				t.Fatalf("frame %d arrived again", n)
			case <-time.After(200 * time.Millisecond):
			}
			if sent := e.SocketStats().Datagrams - statsBefore.Datagrams; sent < 100 {
				t.Fatalf("the media socket sent %d datagrams for 100 frames", sent)
			}
			// The connection's traffic counts what the path sent,
			// which pion's pair statistics do not see.
			after, ok := focusPC.Traffic()
			if sent := after.PacketsOut - before.PacketsOut; !ok || sent < 100 || after.BytesOut-before.BytesOut < 100*uint64(len(payload(false, 0))) {
				t.Fatalf("the connection's traffic counts %d packets and %d bytes out for 100 frames", sent, after.BytesOut-before.BytesOut)
			}

			// The viewer's feedback (pion's transport-wide feedback
			// every 100 ms, and receiver reports) took the path in, and
			// reached the estimator; a PLI was left to pion, and
			// reached the track.
			path := focusPC.est.direct.Load()
			for path.received.Load() == 0 || !focusPC.est.twcc.Load() {
				if time.Now().After(deadline.Add(5 * time.Second)) {
					t.Fatalf("the path took %d RTCP packets, and the estimator has feedback: %v", path.received.Load(), focusPC.est.twcc.Load())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if after, _ := focusPC.Traffic(); after.PacketsIn-before.PacketsIn < path.received.Load() {
				t.Fatalf("the connection's traffic counts %d packets in, fewer than the %d the path took", after.PacketsIn-before.PacketsIn, path.received.Load())
			}
			if st := e.SocketStats(); st.RTCPTaken == statsBefore.RTCPTaken || st.RTCPReplays != 0 {
				t.Fatalf("the socket counts %d RTCP packets taken and %d replays", st.RTCPTaken-statsBefore.RTCPTaken, st.RTCPReplays)
			}
			if err := viewer.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: <-ssrc}}); err != nil {
				t.Fatal(err)
			}
			for sfu.Stats().PLIsReceived == 0 {
				if time.Now().After(deadline.Add(5 * time.Second)) {
					t.Fatal("the viewer's PLI never reached the track")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := focusPC.Close(); err != nil {
				t.Fatal(err)
			}
			h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 9}
			if _, sent, err := path.write(&h, []byte{1}); !sent || err == nil {
				t.Fatalf("a closed connection's path: sent %v, err %v; want an error", sent, err)
			}
		})
	}
}

// hasRemote reports whether the path has an address to send to.
func (p *directPath) hasRemote() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.to.IsValid()
}

// TestDirectPathAllocatesNothing: encrypting and queueing a packet
// allocates nothing.
func TestDirectPathAllocatesNothing(t *testing.T) {
	conn := listenBatched(t, "udp4", "127.0.0.1")
	defer conn.Close()
	_, to := sinks(t, 1)
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		seal, err := newSealer(profile, make([]byte, 16), make([]byte, saltLen(t, profile)))
		if err != nil {
			t.Fatal(err)
		}
		path := &directPath{conn: conn, seal: seal, to: to[0]}
		h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 7}
		if err := h.SetExtension(3, []byte{0, 1}); err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, 1000)
		write := func() {
			h.SequenceNumber++
			if _, sent, err := path.write(&h, payload); !sent || err != nil {
				t.Fatalf("write: sent %v, %v", sent, err)
			}
			conn.flush()
		}
		write() // the first packet of an SSRC makes its SRTP state
		if allocs := testing.AllocsPerRun(200, write); allocs != 0 {
			t.Fatalf("profile %v: %v allocations per packet", profile, allocs)
		}
	}
}

func saltLen(t *testing.T, profile srtp.ProtectionProfile) int {
	t.Helper()
	n, err := profile.SaltLen()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDirectPathWithoutRemote: a path with no remote address (before ICE
// has a pair, or a pair the media socket does not carry) leaves the
// packet to pion.
func TestDirectPathWithoutRemote(t *testing.T) {
	conn := listenBatched(t, "udp4", "127.0.0.1")
	defer conn.Close()
	seal, err := newGCMSealer(make([]byte, 16), make([]byte, 12))
	if err != nil {
		t.Fatal(err)
	}
	path := &directPath{conn: conn, seal: seal}
	path.setRemote(&webrtc.ICECandidatePair{
		Local:  &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolTCP, Typ: webrtc.ICECandidateTypeHost},
		Remote: &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolTCP, Address: "127.0.0.1", Port: 9},
	})
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 7}
	if _, sent, err := path.write(&h, []byte{1}); sent || err != nil {
		t.Fatalf("a TCP pair: sent %v, err %v; want pion's path", sent, err)
	}
	path.setRemote(&webrtc.ICECandidatePair{
		Local:  &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Typ: webrtc.ICECandidateTypeHost},
		Remote: &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Address: "127.0.0.1", Port: 9},
	})
	if !path.hasRemote() {
		t.Fatal("a UDP pair gave no remote address")
	}
	path.setRemote(nil)
	if path.hasRemote() {
		t.Fatal("no pair kept a remote address")
	}
}
