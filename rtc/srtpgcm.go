package rtc

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// sealer encrypts the RTP packets of one connection's sending direction.
// buf holds the packet's marshalled header in buf[:n] and has room after
// it for the payload and the authentication tag; seal returns the SRTP
// packet, in buf.
type sealer interface {
	seal(buf []byte, n int, h *rtp.Header, payload []byte) ([]byte, error)
}

// newSealer returns the sealer of profile: the focus's own for the GCM
// profiles, pion's context for the others.
func newSealer(profile srtp.ProtectionProfile, key, salt []byte) (sealer, error) {
	switch profile {
	case srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm:
		return newGCMSealer(key, salt)
	}
	ctx, err := srtp.CreateContext(key, salt, profile)
	if err != nil {
		return nil, err
	}
	return newPionSealer(ctx), nil
}

// checkRoom reports an error when buf, with a header of n bytes, has no
// room for payload and an authentication tag of tag bytes.
func checkRoom(buf []byte, n int, payload []byte, tag int) error {
	if n+len(payload)+tag > cap(buf) {
		return fmt.Errorf("rtc: an RTP packet of %d bytes is too long", n+len(payload))
	}
	return nil
}

// gcmSealer is SRTP with AEAD_AES_128_GCM or AEAD_AES_256_GCM (RFC 7714),
// the profiles the focus prefers, done here rather than by pion's
// srtp.Context. Per packet pion parses the header it was just given
// marshalled, finds the stream's state in a map, and wants the payload
// copied behind the header first; here the header that was marshalled is
// authenticated as it is, the stream's state is found in a short list,
// and the payload is encrypted from where it lies into the packet. That
// is about a twentieth of the CPU of a forwarded packet
// (docs/performance.md). TestGCMSealerMatchesPion holds it to pion's
// output byte for byte, across sequence-number wraps and retransmissions.
type gcmSealer struct {
	gcmSession
	streams []gcmStream
}

// gcmSession is the cipher of one direction of SRTP or SRTCP with a GCM
// profile: the AEAD under the session key, and the session salt of its
// IVs. The focus's sealer and its SRTCP opener (srtcpOpener) each have
// one.
type gcmSession struct {
	aead cipher.AEAD
	salt [gcmNonceSize]byte
	iv   [gcmNonceSize]byte // each packet's, here so as not to escape
}

// gcmNonceSize is the length of an RFC 7714 IV, and of its session salt;
// gcmTagSize is the length of its authentication tag.
const (
	gcmNonceSize = 12
	gcmTagSize   = 16
)

// Key derivation labels of RFC 3711 §4.3.1: SRTP's session key and
// salt, and SRTCP's.
const (
	labelSRTPKey   = 0x00
	labelSRTPSalt  = 0x02
	labelSRTCPKey  = 0x03
	labelSRTCPSalt = 0x05
)

// gcmStream is the sending state of one SSRC: its rollover counter (how
// often its sequence numbers wrapped) and the newest sequence number
// sent.
type gcmStream struct {
	ssrc    uint32
	roc     uint32
	last    uint16
	started bool
}

// newGCMSealer derives the session key and salt from a master key of 16
// or 32 bytes and a master salt of 12.
func newGCMSealer(masterKey, masterSalt []byte) (*gcmSealer, error) {
	s := &gcmSealer{}
	if err := s.init(masterKey, masterSalt, labelSRTPKey, labelSRTPSalt); err != nil {
		return nil, err
	}
	return s, nil
}

// init derives the session key and salt of SRTP or SRTCP (by the
// labels) from a master key of 16 or 32 bytes and a master salt of 12.
func (g *gcmSession) init(masterKey, masterSalt []byte, keyLabel, saltLabel byte) error {
	if len(masterSalt) != gcmNonceSize {
		return fmt.Errorf("rtc: an SRTP GCM master salt has %d bytes, not %d", len(masterSalt), gcmNonceSize)
	}
	master, err := aes.NewCipher(masterKey) // refuses lengths other than 16, 24 and 32
	if err != nil {
		return fmt.Errorf("rtc: SRTP master key: %w", err)
	}
	key := make([]byte, len(masterKey))
	srtpKDF(master, keyLabel, masterSalt, key)
	srtpKDF(master, saltLabel, masterSalt, g.salt[:])
	block, err := aes.NewCipher(key)
	if err != nil {
		return fmt.Errorf("rtc: SRTP session key: %w", err)
	}
	if g.aead, err = cipher.NewGCMWithTagSize(block, gcmTagSize); err != nil {
		return fmt.Errorf("rtc: SRTP GCM: %w", err)
	}
	return nil
}

// nonce returns the IV of a packet (RFC 7714 §8.1 and §9.1): two zero
// bytes, the SSRC and the 48-bit packet index, XORed with the session
// salt. SRTP's index is the rollover counter and the sequence number;
// SRTCP's, the 31-bit SRTCP index.
func (g *gcmSession) nonce(ssrc uint32, index uint64) []byte {
	iv := &g.iv
	iv[0], iv[1] = 0, 0
	binary.BigEndian.PutUint32(iv[2:], ssrc)
	binary.BigEndian.PutUint16(iv[6:], uint16(index>>32))
	binary.BigEndian.PutUint32(iv[8:], uint32(index))
	for i := range iv {
		iv[i] ^= g.salt[i]
	}
	return iv[:]
}

// srtpKDF fills out with the session key or salt of label (RFC 3711
// §4.3, a key derivation rate of zero): the key stream of AES in counter
// mode under the master key, whose first block is the master salt with
// the label added to its eighth byte, shifted left by 16 bits.
func srtpKDF(master cipher.Block, label byte, masterSalt, out []byte) {
	var iv, block [aes.BlockSize]byte
	copy(iv[:], masterSalt)
	iv[7] ^= label
	for i := uint16(0); len(out) > 0; i++ {
		binary.BigEndian.PutUint16(iv[aes.BlockSize-2:], i)
		master.Encrypt(block[:], iv[:])
		out = out[copy(out, block[:]):]
	}
}

// seal implements sealer. The RTP header is the associated data, the
// payload is encrypted into buf behind it, and the tag follows.
func (s *gcmSealer) seal(buf []byte, n int, h *rtp.Header, payload []byte) ([]byte, error) {
	if err := checkRoom(buf, n, payload, gcmTagSize); err != nil {
		return nil, err
	}
	roc := s.stream(h.SSRC).rollover(h.SequenceNumber)
	iv := s.nonce(h.SSRC, uint64(roc)<<16|uint64(h.SequenceNumber))
	return s.aead.Seal(buf[:n], iv, payload, buf[:n]), nil
}

// stream returns ssrc's state, making it with the first packet. A
// connection sends a few SSRCs (each track's, and its retransmissions'),
// so a list beats a map.
func (s *gcmSealer) stream(ssrc uint32) *gcmStream {
	for i := range s.streams {
		if s.streams[i].ssrc == ssrc {
			return &s.streams[i]
		}
	}
	s.streams = append(s.streams, gcmStream{ssrc: ssrc})
	return &s.streams[len(s.streams)-1]
}

// rollover returns the rollover counter of the packet numbered seq and
// moves the stream on to it when it is newer than any before, as a
// receiver estimates it (RFC 3711 Appendix A). A packet sent again from
// before the last wrap (a retransmission) has the counter before it.
func (st *gcmStream) rollover(seq uint16) uint32 {
	if !st.started {
		st.started, st.last = true, seq
		return 0
	}
	if int16(seq-st.last) > 0 {
		if seq < st.last {
			st.roc++
		}
		st.last = seq
		return st.roc
	}
	if seq > st.last && st.roc > 0 {
		return st.roc - 1
	}
	return st.roc
}

// srtpOverhead bounds what the profiles pionSealer serves add to a packet
// (the authentication tag), and maxExtensions the header extensions of a
// packet pion parses without allocating.
const (
	srtpOverhead  = 16
	maxExtensions = 16
)

// pionSealer leaves the other profiles (AES-CM with HMAC-SHA1) to pion's
// srtp.Context.
type pionSealer struct {
	ctx    *srtp.Context
	header rtp.Header // EncryptRTP's parse of each packet, reused
}

func newPionSealer(ctx *srtp.Context) *pionSealer {
	return &pionSealer{
		ctx:    ctx,
		header: rtp.Header{CSRC: make([]uint32, 0, 15), Extensions: make([]rtp.Extension, 0, maxExtensions)},
	}
}

// seal implements sealer: the payload is copied behind the header and
// sealed in place.
func (s *pionSealer) seal(buf []byte, n int, _ *rtp.Header, payload []byte) ([]byte, error) {
	if err := checkRoom(buf, n, payload, srtpOverhead); err != nil {
		return nil, err
	}
	n += copy(buf[n:cap(buf)], payload)
	return s.ctx.EncryptRTP(buf[:0], buf[:n], &s.header)
}
