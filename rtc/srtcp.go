package rtc

import (
	"encoding/binary"
	"errors"
)

// srtcpOpener authenticates and decrypts the SRTCP a connection's remote
// peer sends, with AEAD_AES_128_GCM or AEAD_AES_256_GCM (RFC 7714 §9),
// and refuses a packet it has taken before (RFC 3711 §3.3.2), per
// sending SSRC. It serves the direct receive path (directPath.receive);
// pion's own SRTCP session decrypts whatever that path leaves to it.
type srtcpOpener struct {
	gcmSession
	aad     [srtcpHeaderSize + srtcpIndexSize]byte
	senders []srtcpWindow
}

// The parts of an SRTCP packet with a GCM profile: the first RTCP
// header and the sender's SSRC in the clear, then the encrypted rest,
// the tag, and the E flag with the 31-bit SRTCP index (no MKI).
const (
	srtcpHeaderSize = 8
	srtcpIndexSize  = 4
	srtcpEFlag      = 0x80
	// srtcpWindowSize is how far behind the newest index a packet may
	// come and still be taken once, as pion's window for SRTCP.
	srtcpWindowSize = 64
	// maxSRTCPSenders bounds the SSRCs a peer's SRTCP is taken from, and
	// so the list searched per packet. A browser sends from one or two.
	maxSRTCPSenders = 16
)

// srtcpWindow is the replay window of one sending SSRC: the newest
// index taken and, in seen, which of the srtcpWindowSize before it (bit
// i for newest-i).
type srtcpWindow struct {
	ssrc    uint32
	newest  uint32
	seen    uint64
	started bool // whether any index was taken
}

var (
	errSRTCPShort       = errors.New("rtc: an SRTCP packet too short for its header, tag and index")
	errSRTCPUnencrypted = errors.New("rtc: an SRTCP packet not encrypted (E flag clear)")
	errSRTCPAuth        = errors.New("rtc: an SRTCP packet failed authentication")
	errSRTCPReplay      = errors.New("rtc: an SRTCP packet replayed or too old")
	errSRTCPSenders     = errors.New("rtc: SRTCP from more senders than the direct path keeps")
)

// newSRTCPOpener derives the SRTCP session key and salt from the remote
// peer's master key (16 or 32 bytes) and master salt (12).
func newSRTCPOpener(masterKey, masterSalt []byte) (*srtcpOpener, error) {
	o := &srtcpOpener{}
	if err := o.init(masterKey, masterSalt, labelSRTCPKey, labelSRTCPSalt); err != nil {
		return nil, err
	}
	return o, nil
}

// open authenticates pkt and decrypts it into dst, which must hold
// len(pkt) bytes, and returns the compound RTCP packet in dst. A packet
// is taken once: its index is marked, and the same index again (or one
// from behind the window) is errSRTCPReplay. A packet sent unencrypted
// (which browsers never do) is errSRTCPUnencrypted, and one from a
// sender past maxSRTCPSenders is errSRTCPSenders: both left for pion.
func (o *srtcpOpener) open(dst, pkt []byte) ([]byte, error) {
	if len(pkt) < srtcpHeaderSize+gcmTagSize+srtcpIndexSize {
		return nil, errSRTCPShort
	}
	trailer := pkt[len(pkt)-srtcpIndexSize:]
	if trailer[0]&srtcpEFlag == 0 {
		return nil, errSRTCPUnencrypted
	}
	index := binary.BigEndian.Uint32(trailer) &^ (srtcpEFlag << 24)
	ssrc := binary.BigEndian.Uint32(pkt[4:8])
	// The associated data: the clear header, and the E flag with the
	// index.
	copy(o.aad[:], pkt[:srtcpHeaderSize])
	copy(o.aad[srtcpHeaderSize:], trailer)
	sealed := pkt[srtcpHeaderSize : len(pkt)-srtcpIndexSize]
	n := copy(dst, pkt[:srtcpHeaderSize])
	plain, err := o.aead.Open(dst[n:n], o.nonce(ssrc, uint64(index)), sealed, o.aad[:])
	if err != nil {
		return nil, errSRTCPAuth
	}
	// Authenticated before the replay check, so that only the peer's own
	// packets count as replays (and make windows).
	w := o.window(ssrc)
	if w == nil {
		return nil, errSRTCPSenders
	}
	if !w.fresh(index) {
		return nil, errSRTCPReplay
	}
	w.take(index)
	return dst[:n+len(plain)], nil
}

// window returns ssrc's replay window, making it with the first packet,
// or nil past maxSRTCPSenders. A peer sends SRTCP from one SSRC or a
// few, so a list beats a map.
func (o *srtcpOpener) window(ssrc uint32) *srtcpWindow {
	for i := range o.senders {
		if o.senders[i].ssrc == ssrc {
			return &o.senders[i]
		}
	}
	if len(o.senders) == maxSRTCPSenders {
		return nil
	}
	o.senders = append(o.senders, srtcpWindow{ssrc: ssrc})
	return &o.senders[len(o.senders)-1]
}

// behind returns how far index is behind the newest taken, modulo the
// 31-bit index space: 0 for the newest itself, negative for one ahead.
func (w *srtcpWindow) behind(index uint32) int32 {
	// Shifted to the top of 32 bits, the difference wraps as a 31-bit
	// one would; shifted back, it keeps its sign.
	return int32((w.newest-index)<<1) >> 1
}

// fresh reports whether index may be taken: the first, ahead of the
// newest, or in the window behind it and not taken yet.
func (w *srtcpWindow) fresh(index uint32) bool {
	d := w.behind(index)
	switch {
	case !w.started || d < 0:
		return true
	case d >= srtcpWindowSize:
		return false
	}
	return w.seen&(1<<d) == 0
}

// take marks index as taken; fresh must have said yes.
func (w *srtcpWindow) take(index uint32) {
	if !w.started {
		w.started, w.newest, w.seen = true, index, 1
		return
	}
	d := w.behind(index)
	if d < 0 {
		shift := uint32(-d)
		if shift >= srtcpWindowSize {
			w.seen = 0
		} else {
			w.seen <<= shift
		}
		w.newest = index
		d = 0
	}
	w.seen |= 1 << d
}
