package rtc

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/rtc/bwe"
)

// directPath sends a connection's RTP straight to the media socket. It
// encrypts with SRTP keys of its own, derived from the connection's DTLS
// handshake as pion derives its own (with the focus's sealer for the GCM
// profiles, see gcmSealer, else pion's srtp.Context), straight into the
// batched socket's next slot, for the remote address of the selected ICE
// pair. Per packet that skips pion's SRTP session (a lock, a map and a
// channel), its transport mux, its ICE connection (a channel, a clock
// read, pair statistics) and its UDP mux (a lock and an address search):
// about a tenth of the CPU of a forwarded packet (docs/performance.md).
//
// With a GCM profile the path also receives: the media socket hands it
// the SRTCP that comes from that address, and it takes the compound
// packets that hold only feedback the estimator reads (see receive),
// which are most of what a subscriber sends.
//
// pion keeps everything else: ICE checks, consent and keepalives, DTLS,
// the SRTCP the path does not take, and all the media the focus
// receives. Once a connection has a direct path, pion encrypts none of
// its RTP (the estimator, which every local stream's packets pass, sends
// them here), so two contexts never number the same SSRC.
type directPath struct {
	conn *batchConn
	est  *estimator

	mu     sync.Mutex
	seal   sealer
	to     netip.AddrPort
	closed bool
	// What the path sent, which pion's pair statistics leave out.
	packets, bytes uint64

	// The receiving side, used under the media socket's receive lock
	// (batchConn.receive). open is nil where the profile is not GCM, and
	// pion then receives everything.
	open *srtcpOpener
	// What the path took, which pion's pair statistics leave out.
	received, receivedBytes atomic.Uint64
}

var errNoDirectPath = errors.New("rtc: no direct path")

// newDirectPath keys a path for the connection pc, whose DTLS transport
// d has finished its handshake.
func newDirectPath(conn *batchConn, est *estimator, pc *webrtc.PeerConnection, d *webrtc.DTLSTransport) (*directPath, error) {
	dc := dtlsConnOf(d)
	if dc == nil {
		return nil, fmt.Errorf("%w: the DTLS connection is not reachable", errNoDirectPath)
	}
	profile, ok := dc.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, fmt.Errorf("%w: no SRTP profile was negotiated", errNoDirectPath)
	}
	state, ok := dc.ConnectionState()
	if !ok {
		return nil, fmt.Errorf("%w: the DTLS handshake is not done", errNoDirectPath)
	}
	client, err := dtlsClient(pc)
	if err != nil {
		return nil, err
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return nil, fmt.Errorf("%w: %v", errNoDirectPath, err)
	}
	seal, err := newSealer(cfg.Profile, cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoDirectPath, err)
	}
	p := &directPath{conn: conn, est: est, seal: seal}
	switch cfg.Profile {
	case srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm:
		if p.open, err = newSRTCPOpener(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt); err != nil {
			return nil, fmt.Errorf("%w: %v", errNoDirectPath, err)
		}
	}
	return p, nil
}

// dtlsConnOf returns the DTLS connection of d, which pion does not
// export, or nil. pion's version is pinned in go.mod, and
// TestDirectPathCarriesMedia fails if a new one moves the field.
func dtlsConnOf(d *webrtc.DTLSTransport) *dtls.Conn {
	f := reflect.ValueOf(d).Elem().FieldByName("conn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*dtls.Conn]() {
		return nil
	}
	return *(**dtls.Conn)(unsafe.Pointer(f.UnsafeAddr()))
}

// dtlsClient reports whether the focus is the DTLS client of pc, as pion
// decides it: the inverse of the remote description's setup role, else
// (the remote offered actpass) the answering role the engine sets,
// server.
func dtlsClient(pc *webrtc.PeerConnection) (bool, error) {
	remote := pc.CurrentRemoteDescription()
	if remote == nil {
		return false, fmt.Errorf("%w: no remote description", errNoDirectPath)
	}
	// Parsed afresh: pion's SessionDescription caches its parse in
	// itself, and pion reads that from other goroutines.
	parsed := &sdp.SessionDescription{}
	if err := parsed.UnmarshalString(remote.SDP); err != nil {
		return false, fmt.Errorf("%w: %v", errNoDirectPath, err)
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
// pair. A pair the media socket does not carry (TCP, or a relay of the
// focus's own) leaves the path without one, and packets go pion's way.
func (p *directPath) setRemote(pair *webrtc.ICECandidatePair) {
	var to netip.AddrPort
	if pair != nil && pair.Remote != nil && pair.Local != nil &&
		pair.Remote.Protocol == webrtc.ICEProtocolUDP && pair.Local.Typ != webrtc.ICECandidateTypeRelay {
		if a, err := netip.ParseAddr(pair.Remote.Address); err == nil {
			to = netip.AddrPortFrom(a, pair.Remote.Port)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.conn.route(p.to, to, p)
	p.to = to
}

// close stops the path: a closed connection sends and receives nothing
// more.
func (p *directPath) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.conn.route(p.to, netip.AddrPort{}, p)
}

// write encrypts and queues one packet. It reports false when the path
// has no remote address, and the caller sends the packet pion's way.
func (p *directPath) write(h *rtp.Header, payload []byte) (int, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, true, errDirectClosed
	}
	if !p.to.IsValid() {
		return 0, false, nil
	}
	// Sealed straight into the batch: the header is marshalled into a
	// slot, the payload encrypted behind it.
	b, i, err := p.conn.reserve(p.to)
	if err != nil {
		return 0, true, err
	}
	slot := b.bufs[i][:]
	var out []byte
	n, err := h.MarshalTo(slot)
	if err == nil {
		out, err = p.seal.seal(slot, n, h, payload)
	}
	if err != nil {
		p.conn.commit(b, i, 0)
		return 0, true, err
	}
	p.conn.commit(b, i, len(out))
	p.packets++
	p.bytes += uint64(len(out))
	return n + len(payload), true, nil
}

// sent returns how many packets and bytes the path has sent.
func (p *directPath) sent() (packets, bytes uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.packets, p.bytes
}

var errDirectClosed = errors.New("rtc: the connection is closed")

// receive takes the SRTCP datagram pkt, which came from the path's
// remote address, when it holds only feedback the estimator reads:
// transport-wide feedback, REMB, and the receiver reports and source
// descriptions that come with them (nothing in the focus reads those).
// That is what a subscriber sends ten times a second, and pion would
// carry each one through its UDP mux, ICE connection, SRTCP session and
// interceptors to the estimator, through four goroutines, parsing it
// twice on the way: about a tenth of the CPU of a forwarded packet
// (docs/performance.md). Here it is decrypted into scratch (at least
// len(pkt) bytes) and read in place.
//
// It leaves pkt untouched, for pion to handle as before: a compound
// that starts with a sender report (told from the header in the clear,
// so left without decrypting), or that holds a NACK, PLI or FIR (which
// the tracks' RTCP loops answer) or anything else; a packet that fails
// authentication, such as another connection's at a reused address; and
// one sent unencrypted. A replay of a packet the path took or left is
// dropped: pion never saw the original of one taken, to refuse it.
func (p *directPath) receive(pkt, scratch []byte) rtcpVerdict {
	if p.open == nil || len(pkt) < srtcpHeaderSize || pkt[1] == ptSenderReport || len(scratch) < len(pkt) {
		return rtcpLeft
	}
	plain, err := p.open.open(scratch, pkt)
	switch {
	case errors.Is(err, errSRTCPReplay):
		return rtcpReplay
	case err != nil || !feedbackOnly(plain):
		return rtcpLeft
	}
	p.est.handleRTCP(plain)
	p.received.Add(1)
	p.receivedBytes.Add(uint64(len(pkt)))
	return rtcpTaken
}

// rtcpVerdict is what directPath.receive did with a packet.
type rtcpVerdict uint8

const (
	rtcpLeft   rtcpVerdict = iota // left to pion
	rtcpTaken                     // read by the estimator
	rtcpReplay                    // dropped as a replay
)

// feedbackOnly reports whether the compound RTCP packet b is well formed
// and holds only receiver reports, source descriptions, transport-wide
// feedback and application-layer feedback (REMB).
func feedbackOnly(b []byte) bool {
	only := true
	err := bwe.Packets(b, func(pt, format uint8, _ []byte) {
		switch {
		case pt == ptReceiverReport, pt == ptSourceDescription:
		case pt == ptTransportFeedback && format == fmtTWCC:
		case pt == ptPayloadFeedback && format == fmtAppLayer:
		default:
			only = false
		}
	})
	return only && err == nil
}

// attachDirectPath gives p's RTP the direct path once its DTLS handshake
// is done, when the media socket is the batched one.
func (e *Engine) attachDirectPath(p *Peer) {
	conn, ok := e.conn.(*batchConn)
	if !ok {
		return // a simulated network: pion's path only
	}
	d := p.SCTP().Transport()
	ice := d.ICETransport()
	est := p.est
	// mu orders the handlers below with the keying, so that the path
	// has the latest pair and a closed connection's path stays closed.
	var mu sync.Mutex
	// paired mirrors whether pion's ICE connection has a selected pair
	// to write to. An ICE restart unsets the pair without telling
	// anyone, and pion then drops RTP until a new pair is chosen; the
	// direct path must not go on sending to the old address, where the
	// restarted peer drops it or takes it late. The restart moves the
	// ICE state to checking, which is told.
	paired := func(s webrtc.ICETransportState) bool {
		return s == webrtc.ICETransportStateConnected || s == webrtc.ICETransportStateCompleted ||
			s == webrtc.ICETransportStateDisconnected
	}
	// follow points path at the current pair, or at none.
	follow := func(path *directPath) {
		var pair *webrtc.ICECandidatePair
		if paired(ice.State()) {
			pair, _ = ice.GetSelectedCandidatePair()
		}
		path.setRemote(pair)
	}
	d.OnStateChange(func(state webrtc.DTLSTransportState) {
		switch state {
		case webrtc.DTLSTransportStateConnected:
			// pion calls this holding the transport's lock; the path
			// is keyed outside it.
			go func() {
				path, err := newDirectPath(conn, est, p.PeerConnection, d)
				if err != nil {
					e.log.Debug().Err(err).Msg("rtc: RTP takes pion's path")
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if d.State() != webrtc.DTLSTransportStateConnected {
					return // closed meanwhile
				}
				follow(path)
				est.direct.Store(path)
			}()
		case webrtc.DTLSTransportStateClosed, webrtc.DTLSTransportStateFailed:
			mu.Lock()
			defer mu.Unlock()
			if path := est.direct.Load(); path != nil {
				path.close()
			}
		}
	})
	refollow := func() {
		mu.Lock()
		defer mu.Unlock()
		if path := est.direct.Load(); path != nil {
			follow(path)
		}
	}
	ice.OnSelectedCandidatePairChange(func(*webrtc.ICECandidatePair) { refollow() })
	ice.OnConnectionStateChange(func(webrtc.ICETransportState) { refollow() })
}
