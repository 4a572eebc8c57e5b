package bwe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/pion/rtcp"
)

// pionTWCC is pion's parse, a panic counting as an error: the fuzz
// targets judge this package, not pion.
func pionTWCC(data []byte) (p *rtcp.TransportLayerCC, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pion panicked: %v", r)
		}
	}()
	p = new(rtcp.TransportLayerCC)
	return p, p.Unmarshal(data)
}

// FuzzParseTWCC checks ParseTWCC against pion's TransportLayerCC:
// whatever pion parses, ParseTWCC parses the same, with these deliberate
// differences, where pion is wrong:
//   - pion ignores the P bit and reads chunks and deltas into the
//     padding, or accepts a padding count of 0 or one longer than the
//     packet. ParseTWCC then fails, and must succeed with the same
//     reports once the P bit is cleared.
//   - pion wants a byte after the last chunk (its bound is >= where > is
//     meant), so it rejects a feedback whose chunks end the packet and
//     that has no deltas. ParseTWCC accepts it, and pion agrees once the
//     packet is a word longer.
func FuzzParseTWCC(f *testing.F) {
	for _, tc := range validTWCC(f) {
		f.Add(tc.pkt)
	}
	f.Add([]byte{})
	f.Add(rawTWCC(1, 1, 0, nil))
	f.Add(rawTWCC(1, 2, 0, []uint16{0x4002}, 0, 1))
	f.Add(rawTWCC(1, 8192, 0, []uint16{0x1fff}))
	f.Add(rawTWCC(65535, 3, 0xffffff, []uint16{0x0003}))
	f.Add(withPadding(rawTWCC(1, 2, 0, []uint16{0x4002}, 0, 1, 0, 1)[:24], 4))
	f.Add(withPadding(rawTWCC(1, 1, 0, nil), 4))
	f.Add(rawTWCC(1, 2, 0, []uint16{0x0001, 0x0001}))

	f.Fuzz(func(t *testing.T, data []byte) {
		h, got, err := parseTWCC(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if len(got) != 0 {
				t.Fatalf("fn called %d times before the error %v", len(got), err)
			}
		} else {
			if len(got) != int(h.StatusCount) {
				t.Fatalf("%d reports for a status count of %d", len(got), h.StatusCount)
			}
			for i, r := range got {
				if r.seq != h.BaseSeq+uint16(i) || (!r.received && r.arrival != 0) {
					t.Fatalf("report %d: %+v, base %d", i, r, h.BaseSeq)
				}
			}
		}

		p, pionErr := pionTWCC(data)
		twcc := len(data) >= 2 && data[1] == rtcpRTPFB && data[0]&0x1f == fmtTWCC
		padded := len(data) >= 1 && data[0]&0x20 != 0
		switch {
		case pionErr == nil && twcc && err == nil:
			same(t, h, got, p)
		case pionErr == nil && twcc:
			if !padded {
				t.Fatalf("pion parses it, ParseTWCC: %v", err)
			}
			cleared := slices.Clone(data)
			cleared[0] &^= 0x20
			h, got, clearedErr := parseTWCC(cleared)
			if clearedErr != nil {
				t.Fatalf("pion parses it, ParseTWCC: %v, and %v without the P bit", err, clearedErr)
			}
			same(t, h, got, p)
		case pionErr != nil && err == nil:
			if padded {
				t.Fatalf("ParseTWCC parses a padded packet pion rejects: %v", pionErr)
			}
			length := binary.BigEndian.Uint16(data[2:])
			if length == math.MaxUint16 {
				return
			}
			longer := append(slices.Clone(data[:4*(int(length)+1)]), 0, 0, 0, 0)
			binary.BigEndian.PutUint16(longer[2:], length+1)
			p, longerErr := pionTWCC(longer)
			if longerErr != nil {
				t.Fatalf("ParseTWCC parses it, pion: %v, and %v a word longer", pionErr, longerErr)
			}
			same(t, h, got, p)
		}
	})
}

func same(t *testing.T, h TWCCHeader, got []report, p *rtcp.TransportLayerCC) {
	t.Helper()
	if want := pionHeader(p); h != want {
		t.Fatalf("header %+v, pion %+v", h, want)
	}
	if want := pionReports(t, p); !slices.Equal(got, want) {
		t.Fatalf("reports\n%v\npion\n%v", got, want)
	}
}

// FuzzPackets checks the framing Packets finds, and that it agrees with
// pion's: a compound pion parses, Packets walks whole, packet by packet.
func FuzzPackets(f *testing.F) {
	_, b := compound(f)
	f.Add(b)
	f.Add(b[:len(b)-4])
	f.Add(append(slices.Clone(b), 0x80, 0xc9))
	f.Add(b[:32])
	f.Add([]byte{})
	f.Add([]byte{0x80, 0xc9, 0, 0})
	f.Add([]byte{0x40, 0xc9, 0, 0})
	f.Add([]byte{0x80, 0xc9, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := walk(data)
		off := 0
		for i, g := range got {
			if len(g.pkt) < 4 || &g.pkt[0] != &data[off] || cap(g.pkt) != len(g.pkt) {
				t.Fatalf("packet %d is not the bytes at %d", i, off)
			}
			if g.pkt[0]>>6 != 2 || g.pkt[1] != g.pt || g.pkt[0]&0x1f != g.fmt ||
				len(g.pkt) != 4*(int(binary.BigEndian.Uint16(g.pkt[2:]))+1) {
				t.Fatalf("packet %d: %d/%d % x", i, g.pt, g.fmt, g.pkt)
			}
			off += len(g.pkt)
			// The parsers get what Packets delivers: they must not panic.
			switch {
			case g.pt == rtcpRTPFB && g.fmt == fmtTWCC:
				_, _ = ParseTWCC(g.pkt, func(uint16, bool, int64) {})
			case g.pt == rtcpPSFB && g.fmt == fmtAFB:
				_, _ = ParseREMB(g.pkt)
			}
		}
		if err == nil && off != len(data) {
			t.Fatalf("walked %d of %d bytes without an error", off, len(data))
		}
		if err != nil && (!errors.Is(err, ErrMalformed) || off == len(data)) {
			t.Fatalf("error %v after %d of %d bytes", err, off, len(data))
		}

		if pkts, pionErr := pionUnmarshal(data); pionErr == nil {
			if err != nil || len(got) != len(pkts) {
				t.Fatalf("pion parses %d packets; Packets walks %d: %v", len(pkts), len(got), err)
			}
		}
	})
}

func pionUnmarshal(data []byte) (pkts []rtcp.Packet, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pion panicked: %v", r)
		}
	}()
	return rtcp.Unmarshal(data)
}

// FuzzParseREMB checks ParseREMB against pion's
// ReceiverEstimatedMaximumBitrate: whatever pion parses, ParseREMB parses
// to the same bitrate, with these deliberate differences, where pion is
// wrong:
//   - a mantissa of 0 is a bitrate of 0; pion normalises it as if it had
//     a leading 1 and reports 2^(23+exponent).
//   - pion computes the length in 16 bits, so a length field of 16383 or
//     more wraps around; ParseREMB takes it as it is and finds the packet
//     too short.
//   - a bitrate of 2^64 or more is math.MaxUint64.
//
// It accepts more than pion: padding, and a media SSRC other than 0.
func FuzzParseREMB(f *testing.F) {
	for _, bitrate := range []float32{0, 1, 64000, 2.5e6, 1e9, 1e19, math.MaxFloat32} {
		b, err := rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: bitrate, SSRCs: []uint32{2, 3}}.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(rawREMB(63, 2))
	f.Add(withPadding(rawREMB(10, 1000, 1), 4))
	f.Add(rawREMB(1, 1, 5)[:20])
	f.Add(func() []byte { b := rawREMB(1, 1, 5); b[16] = 2; return b }())
	f.Add(func() []byte { b := rawREMB(1, 1); b[15] = 'X'; return b }())
	f.Add(marshalTWCC(f, realisticTWCC()))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := ParseREMB(data)
		if ok && (data[1] != rtcpPSFB || data[0]&0x1f != fmtAFB || string(data[12:16]) != "REMB") {
			t.Fatalf("%d from % x", got, data)
		}
		if !ok && got != 0 {
			t.Fatalf("%d, not ok", got)
		}

		var p rtcp.ReceiverEstimatedMaximumBitrate
		if p.Unmarshal(data) != nil || 4*(int(binary.BigEndian.Uint16(data[2:]))+1) > math.MaxUint16 {
			return
		}
		if !ok {
			t.Fatalf("pion parses %g, ParseREMB not", p.Bitrate)
		}
		var want uint64
		switch {
		case data[17]&3 == 0 && data[18] == 0 && data[19] == 0:
			want = 0
		case float64(p.Bitrate) >= 1<<64:
			want = math.MaxUint64
		default:
			want = uint64(p.Bitrate)
		}
		if got != want {
			t.Fatalf("%d, pion %g, want %d", got, p.Bitrate, want)
		}
	})
}
