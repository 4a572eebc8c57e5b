package rtc

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"unsafe"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// srtpPath sends a connection's RTP straight to the media socket. It
// encrypts with its own SRTP context, keyed from the connection's DTLS
// handshake as pion keys its own, and queues each datagram on the batched
// socket for the selected ICE pair's remote address. That skips, per
// packet, pion's SRTP session (a lock and a map), its transport mux, its
// ICE connection and its UDP mux (another lock and map): about a tenth of
// the CPU of a forwarded packet (docs/performance.md).
//
// pion keeps everything else: ICE (checks, consent, keepalives), DTLS,
// RTCP both ways, and the RTP the focus receives. pion encrypts no RTP of
// its own on a connection, so two contexts never number the same SSRC.
type srtpPath struct {
	conn *batchConn

	mu     sync.Mutex
	ctx    *srtp.Context
	to     netip.AddrPort
	header rtp.Header // EncryptRTP's parse of each packet, reused
	plain  [slotSize]byte
	sealed [slotSize]byte
}

var errNoFastPath = errors.New("rtc: no direct path")

// newSRTPPath keys a path for d's connection, whose description pc has.
func newSRTPPath(conn *batchConn, pc *webrtc.PeerConnection, d *webrtc.DTLSTransport) (*srtpPath, error) {
	dc := dtlsConnOf(d)
	if dc == nil {
		return nil, fmt.Errorf("%w: the DTLS connection is not reachable", errNoFastPath)
	}
	profile, ok := dc.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, fmt.Errorf("%w: no SRTP profile was negotiated", errNoFastPath)
	}
	state, ok := dc.ConnectionState()
	if !ok {
		return nil, fmt.Errorf("%w: the DTLS handshake is not done", errNoFastPath)
	}
	client, err := dtlsClient(pc)
	if err != nil {
		return nil, err
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return nil, fmt.Errorf("%w: %v", errNoFastPath, err)
	}
	ctx, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoFastPath, err)
	}
	return &srtpPath{
		conn:   conn,
		ctx:    ctx,
		header: rtp.Header{CSRC: make([]uint32, 0, 15), Extensions: make([]rtp.Extension, 0, maxHeaderExtensions)},
	}, nil
}

// maxHeaderExtensions bounds the extensions of a packet the focus sends.
const maxHeaderExtensions = 16

// dtlsConnOf returns the DTLS connection of d, which pion does not
// export, or nil. pion's version is pinned in go.mod;
// TestFastPathCarriesMedia fails if a new one moves the field.
func dtlsConnOf(d *webrtc.DTLSTransport) *dtls.Conn {
	f := reflect.ValueOf(d).Elem().FieldByName("conn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*dtls.Conn]() {
		return nil
	}
	return *(**dtls.Conn)(unsafe.Pointer(f.UnsafeAddr()))
}

// dtlsClient reports whether the focus is the DTLS client of pc, as pion
// decides it: the inverse of the remote description's setup role, else
// the answering role the engine sets (server).
func dtlsClient(pc *webrtc.PeerConnection) (bool, error) {
	remote := pc.CurrentRemoteDescription()
	if remote == nil {
		return false, fmt.Errorf("%w: no remote description", errNoFastPath)
	}
	// Parsed afresh: pion's SessionDescription caches its parse in
	// itself, and pion reads that from other goroutines.
	parsed := &sdp.SessionDescription{}
	if err := parsed.UnmarshalString(remote.SDP); err != nil {
		return false, fmt.Errorf("%w: %v", errNoFastPath, err)
	}
	setup, ok := parsed.Attribute(sdp.AttrKeyConnectionSetup)
	for _, m := range parsed.MediaDescriptions {
		if ok {
			break
		}
		setup, ok = m.Attribute(sdp.AttrKeyConnectionSetup)
	}
	switch strings.TrimSpace(setup) {
	case sdp.ConnectionRoleActive.String():
		return false, nil
	case sdp.ConnectionRolePassive.String():
		return true, nil
	}
	return false, nil
}

// setRemote points the path at the remote address of ice's selected
// pair, asked afresh on every call so that concurrent calls agree. A pair
// that does not run over the media socket's UDP leaves the path without
// one, and the packets go pion's way.
func (s *srtpPath) setRemote(ice *webrtc.ICETransport) {
	pair, _ := ice.GetSelectedCandidatePair()
	var to netip.AddrPort
	if pair != nil && pair.Remote != nil && pair.Local != nil &&
		pair.Remote.Protocol == webrtc.ICEProtocolUDP && pair.Local.Typ != webrtc.ICECandidateTypeRelay {
		if a, err := netip.ParseAddr(pair.Remote.Address); err == nil {
			to = netip.AddrPortFrom(a, pair.Remote.Port)
		}
	}
	s.mu.Lock()
	s.to = to
	s.mu.Unlock()
}

// write encrypts and queues one packet. It reports false when the path
// has no remote address, and the caller sends the packet pion's way.
func (s *srtpPath) write(h *rtp.Header, payload []byte) (int, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.to.IsValid() {
		return 0, false, nil
	}
	n, err := h.MarshalTo(s.plain[:])
	if err != nil {
		return 0, true, err
	}
	if n+len(payload)+srtpOverhead > len(s.plain) {
		return 0, true, fmt.Errorf("rtc: an RTP packet of %d bytes is too long", n+len(payload))
	}
	n += copy(s.plain[n:], payload)
	out, err := s.ctx.EncryptRTP(s.sealed[:0], s.plain[:n], &s.header)
	if err != nil {
		return 0, true, err
	}
	if _, err := s.conn.WriteToAddrPort(out, s.to); err != nil {
		return 0, true, err
	}
	return n, true, nil
}

// srtpOverhead bounds what SRTP adds to a packet: the authentication tag.
const srtpOverhead = 16

// attachFastPath gives p's RTP the direct path once its DTLS handshake
// is done, when the media socket is the batched one.
func (e *Engine) attachFastPath(p *Peer) {
	conn, ok := e.conn.(*batchConn)
	if !ok {
		return // a simulated network: pion's path only
	}
	d := p.SCTP().Transport()
	ice := d.ICETransport()
	pacer := p.est.pacer
	d.OnStateChange(func(state webrtc.DTLSTransportState) {
		switch state {
		case webrtc.DTLSTransportStateConnected:
			// pion calls this holding the transport's lock; the path
			// is keyed outside it.
			go func() {
				path, err := newSRTPPath(conn, p.PeerConnection, d)
				if err != nil {
					e.log.Debug().Err(err).Msg("rtc: RTP takes pion's path")
					return
				}
				pacer.fast.Store(path)
				path.setRemote(ice) // after Store: a change from now on is seen
			}()
		case webrtc.DTLSTransportStateClosed, webrtc.DTLSTransportStateFailed:
			pacer.fast.Store(nil)
		}
	})
	ice.OnSelectedCandidatePairChange(func(*webrtc.ICECandidatePair) {
		if path := pacer.fast.Load(); path != nil {
			path.setRemote(ice)
		}
	})
}

// hasRemote reports whether the path has an address to send to.
func (s *srtpPath) hasRemote() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.to.IsValid()
}
