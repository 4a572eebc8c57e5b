package bwe

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/pion/rtcp"
)

// report is one call of ParseTWCC's fn.
type report struct {
	seq      uint16
	received bool
	arrival  int64
}

// parseTWCC collects what ParseTWCC reports.
func parseTWCC(pkt []byte) (TWCCHeader, []report, error) {
	var got []report
	h, err := ParseTWCC(pkt, func(seq uint16, received bool, arrival int64) {
		got = append(got, report{seq, received, arrival})
	})
	return h, got, err
}

// pionReports is what pion's parse of a TWCC packet says about each
// packet, cumulated the way ParseTWCC documents it. Symbol 3, which pion
// accepts without a delta, is a packet not received (see ParseTWCC).
func pionReports(t testing.TB, p *rtcp.TransportLayerCC) []report {
	t.Helper()
	var out []report
	arrival := int64(p.ReferenceTime) * 64000
	seq, left, d := p.BaseSequenceNumber, int(p.PacketStatusCount), 0
	add := func(symbol uint16) {
		if symbol == rtcp.TypeTCCPacketReceivedSmallDelta || symbol == rtcp.TypeTCCPacketReceivedLargeDelta {
			if d >= len(p.RecvDeltas) || p.RecvDeltas[d].Type != symbol {
				t.Fatalf("pion: receive delta %d does not match symbol %d of packet %d", d, symbol, seq)
			}
			arrival += p.RecvDeltas[d].Delta
			d++
			out = append(out, report{seq, true, arrival})
		} else {
			out = append(out, report{seq, false, 0})
		}
		seq++
		left--
	}
	for _, c := range p.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range min(left, int(c.RunLength)) {
				add(c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			// One-bit symbols are 0 and 1: not received and small delta.
			for _, s := range c.SymbolList[:min(left, len(c.SymbolList))] {
				add(s)
			}
		default:
			t.Fatalf("pion: chunk %T", c)
		}
	}
	if left != 0 || d != len(p.RecvDeltas) {
		t.Fatalf("pion: %d packets left, %d of %d deltas used", left, d, len(p.RecvDeltas))
	}
	return out
}

func pionHeader(p *rtcp.TransportLayerCC) TWCCHeader {
	return TWCCHeader{
		SenderSSRC:    p.SenderSSRC,
		MediaSSRC:     p.MediaSSRC,
		BaseSeq:       p.BaseSequenceNumber,
		StatusCount:   p.PacketStatusCount,
		ReferenceTime: p.ReferenceTime,
		FeedbackCount: p.FbPktCount,
	}
}

// marshalTWCC marshals p with pion, filling in its header. Pion pads to
// a word with zeros; with p.Header.Padding it sets P and counts the
// padding in the last byte (only right if the padding is not empty).
func marshalTWCC(t testing.TB, p rtcp.TransportLayerCC) []byte {
	t.Helper()
	p.Header.Type = rtcp.TypeTransportSpecificFeedback
	p.Header.Count = rtcp.FormatTCC
	p.Header.Length = uint16(p.MarshalSize()/4 - 1)
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withPadding returns pkt with n bytes of RTCP padding added.
func withPadding(pkt []byte, n int) []byte {
	out := append(slices.Clone(pkt), make([]byte, n)...)
	out[0] |= 0x20
	out[len(out)-1] = byte(n)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)/4-1))
	return out
}

// rawTWCC builds a TWCC packet by hand, zero-filled to a word and
// without the P bit, as the draft's figure shows.
func rawTWCC(base, count uint16, ref uint32, chunks []uint16, deltas ...byte) []byte {
	b := []byte{0x80 | 15, 205, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2}
	b = binary.BigEndian.AppendUint16(b, base)
	b = binary.BigEndian.AppendUint16(b, count)
	b = binary.BigEndian.AppendUint32(b, ref<<8|7)
	for _, c := range chunks {
		b = binary.BigEndian.AppendUint16(b, c)
	}
	b = append(b, deltas...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)/4-1))
	return b
}

func small(us int64) *rtcp.RecvDelta {
	return &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: us}
}

func large(us int64) *rtcp.RecvDelta {
	return &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: us}
}

func run(symbol, n uint16) *rtcp.RunLengthChunk {
	return &rtcp.RunLengthChunk{PacketStatusSymbol: symbol, RunLength: n}
}

func oneBit(symbols ...uint16) *rtcp.StatusVectorChunk {
	return &rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: symbols}
}

func twoBit(symbols ...uint16) *rtcp.StatusVectorChunk {
	return &rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: symbols}
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// realisticTWCC is a feedback as a browser sends it every 100 ms or so
// for a few Mbit/s: 45 packets in all four kinds of chunk, two lost,
// mostly small deltas, one long gap and one reordered packet.
func realisticTWCC() rtcp.TransportLayerCC {
	deltas := repeat(small(250), 12)
	deltas = append(deltas, small(1000), small(0), small(500), small(750), small(250), small(250),
		small(2000), small(250), small(250), small(250), small(250), small(500))
	deltas = append(deltas, small(250), large(70000), small(250), small(500), small(250), large(-1000))
	deltas = append(deltas, repeat(small(500), 12)...)
	return rtcp.TransportLayerCC{
		SenderSSRC: 0x11223344, MediaSSRC: 0x55667788,
		BaseSequenceNumber: 40000, PacketStatusCount: 45,
		ReferenceTime: 0x123456, FbPktCount: 200,
		PacketChunks: []rtcp.PacketStatusChunk{
			run(1, 12),
			oneBit(1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1),
			twoBit(1, 2, 1, 1, 0, 1, 2),
			run(1, 12),
		},
		RecvDeltas: deltas,
	}
}

type twccCase struct {
	name string
	pkt  []byte
	want []report // if set, checked besides the comparison with pion
}

// validTWCC is the table of well-formed TWCC packets, also the fuzz seeds.
func validTWCC(t testing.TB) []twccCase {
	padded := rtcp.TransportLayerCC{ // 20 + 2 + 1 bytes: pion pads with 1
		BaseSequenceNumber: 7, PacketStatusCount: 1, ReferenceTime: 3,
		PacketChunks: []rtcp.PacketStatusChunk{run(1, 1)},
		RecvDeltas:   []*rtcp.RecvDelta{small(63750)},
	}
	padded.Header.Padding = true
	unpadded := padded
	unpadded.Header.Padding = false

	return []twccCase{
		{name: "run of small deltas", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			BaseSequenceNumber: 100, PacketStatusCount: 5, ReferenceTime: 1,
			PacketChunks: []rtcp.PacketStatusChunk{run(1, 5)},
			RecvDeltas:   []*rtcp.RecvDelta{small(0), small(250), small(63750), small(1000), small(250)},
		}), want: []report{
			{100, true, 64000}, {101, true, 64250}, {102, true, 128000}, {103, true, 129000}, {104, true, 129250},
		}},
		{name: "run of large and negative deltas", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			BaseSequenceNumber: 1, PacketStatusCount: 4, ReferenceTime: 1000,
			PacketChunks: []rtcp.PacketStatusChunk{run(2, 4)},
			RecvDeltas:   []*rtcp.RecvDelta{large(-8192000), large(8191750), large(-250), large(64000)},
		}), want: []report{
			{1, true, 64000000 - 8192000}, {2, true, 64000000 - 250}, {3, true, 64000000 - 500}, {4, true, 64063500},
		}},
		{name: "runs lost then received", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			BaseSequenceNumber: 10, PacketStatusCount: 5,
			PacketChunks: []rtcp.PacketStatusChunk{run(0, 3), run(1, 2)},
			RecvDeltas:   []*rtcp.RecvDelta{small(500), small(250)},
		}), want: []report{{10, false, 0}, {11, false, 0}, {12, false, 0}, {13, true, 500}, {14, true, 750}}},
		{name: "longest run lost", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			BaseSequenceNumber: 60000, PacketStatusCount: 8192,
			PacketChunks: []rtcp.PacketStatusChunk{run(0, 8191), run(2, 1)},
			RecvDeltas:   []*rtcp.RecvDelta{large(-5000)},
		})},
		{name: "one-bit vector", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			BaseSequenceNumber: 500, PacketStatusCount: 14, ReferenceTime: 77,
			PacketChunks: []rtcp.PacketStatusChunk{oneBit(1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1)},
			RecvDeltas:   repeat(small(2500), 9),
		})},
		{name: "two-bit vector", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			BaseSequenceNumber: 9, PacketStatusCount: 7, ReferenceTime: 5,
			PacketChunks: []rtcp.PacketStatusChunk{twoBit(1, 2, 0, 2, 1, 0, 1)},
			RecvDeltas:   []*rtcp.RecvDelta{small(250), large(-750), large(100000), small(0), small(250)},
		}), want: []report{
			{9, true, 320250}, {10, true, 319500}, {11, false, 0}, {12, true, 419500},
			{13, true, 419500}, {14, false, 0}, {15, true, 419750},
		}},
		{name: "status count inside a vector", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			// The symbols past the count say received, but have no delta.
			BaseSequenceNumber: 1, PacketStatusCount: 10,
			PacketChunks: []rtcp.PacketStatusChunk{oneBit(1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1)},
			RecvDeltas:   repeat(small(250), 8),
		})},
		{name: "status count inside a run and a two-bit vector", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			BaseSequenceNumber: 1, PacketStatusCount: 20,
			PacketChunks: []rtcp.PacketStatusChunk{twoBit(2, 1, 1, 1, 1, 1, 1), run(1, 100)},
			RecvDeltas:   append([]*rtcp.RecvDelta{large(300000)}, repeat(small(250), 19)...),
		})},
		{name: "sequence wraps", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			BaseSequenceNumber: 65533, PacketStatusCount: 6, ReferenceTime: 0xffffff,
			PacketChunks: []rtcp.PacketStatusChunk{twoBit(1, 1, 0, 1, 2, 1, 0)},
			RecvDeltas:   []*rtcp.RecvDelta{small(250), small(250), small(250), large(-250000), small(250)},
		}), want: []report{
			{65533, true, 0xffffff*64000 + 250}, {65534, true, 0xffffff*64000 + 500}, {65535, false, 0},
			{0, true, 0xffffff*64000 + 750}, {1, true, 0xffffff*64000 - 249250}, {2, true, 0xffffff*64000 - 249000},
		}},
		{name: "no packets", pkt: marshalTWCC(t, rtcp.TransportLayerCC{BaseSequenceNumber: 4})},
		{name: "reserved symbol", pkt: marshalTWCC(t, rtcp.TransportLayerCC{
			BaseSequenceNumber: 1, PacketStatusCount: 9,
			PacketChunks: []rtcp.PacketStatusChunk{run(3, 2), twoBit(1, 3, 2, 3, 0, 3, 1)},
			RecvDeltas:   []*rtcp.RecvDelta{small(250), large(500), small(250)},
		}), want: []report{
			{1, false, 0}, {2, false, 0}, {3, true, 250}, {4, false, 0}, {5, true, 750},
			{6, false, 0}, {7, false, 0}, {8, false, 0}, {9, true, 1000},
		}},
		{name: "realistic", pkt: marshalTWCC(t, realisticTWCC())},
		{name: "unpadded", pkt: marshalTWCC(t, unpadded), want: []report{{7, true, 192000 + 63750}}},
		{name: "padded by pion", pkt: marshalTWCC(t, padded), want: []report{{7, true, 192000 + 63750}}},
		{name: "padded by a word", pkt: withPadding(marshalTWCC(t, realisticTWCC()), 4)},
		{name: "padding right after the deltas", pkt: withPadding(
			rawTWCC(1, 2, 0, []uint16{0x2002}, 0, 1)[:24], 8),
			want: []report{{1, true, 0}, {2, true, 250}},
		},
	}
}

func TestParseTWCC(t *testing.T) {
	for _, tc := range validTWCC(t) {
		t.Run(tc.name, func(t *testing.T) {
			var p rtcp.TransportLayerCC
			if err := p.Unmarshal(tc.pkt); err != nil {
				t.Fatalf("pion: %v", err)
			}
			h, got, err := parseTWCC(tc.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if want := pionHeader(&p); h != want {
				t.Errorf("header %+v, pion %+v", h, want)
			}
			if want := pionReports(t, &p); !slices.Equal(got, want) {
				t.Errorf("reports\n%v\npion\n%v", got, want)
			}
			if tc.want != nil && !slices.Equal(got, tc.want) {
				t.Errorf("reports\n%v\nwant\n%v", got, tc.want)
			}
		})
	}
}

func TestParseTWCCMalformed(t *testing.T) {
	valid := marshalTWCC(t, realisticTWCC())
	with := func(b []byte, edit func(b []byte)) []byte {
		b = slices.Clone(b)
		edit(b)
		return b
	}
	remb, _ := rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 1e6}.Marshal()
	nack, _ := (&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: 3}}}).Marshal()

	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"empty", nil},
		{"3 bytes", valid[:3]},
		{"version 1", with(valid, func(b []byte) { b[0] = b[0]&0x3f | 0x40 })},
		{"REMB", remb},
		{"NACK", nack},
		{"RTPFB format 14", with(valid, func(b []byte) { b[0]-- })},
		{"shorter than its length", valid[:len(valid)-4]},
		{"length 16 bytes", with(valid, func(b []byte) { b[3] = 3 })},
		{"status count without chunks", rawTWCC(1, 1, 0, nil)},
		{"status count past the chunks", rawTWCC(1, 15, 0, []uint16{0x8000 | 0x3fff}, make([]byte, 14)...)},
		{"status count past the last run", rawTWCC(1, 8192, 0, []uint16{0x1fff})},
		{"delta missing", rawTWCC(1, 2, 0, []uint16{0x4002}, 0, 1)},
		{"small delta missing", rawTWCC(1, 4, 0, []uint16{0x2004}, 1, 2)},
		{"delta in the padding", withPadding(rawTWCC(1, 2, 0, []uint16{0x4002}, 0, 1, 0, 1)[:24], 4)},
		{"chunk in the padding", withPadding(rawTWCC(1, 1, 0, nil), 4)},
		{"padding count 0", with(withPadding(valid, 4), func(b []byte) { b[len(b)-1] = 0 })},
		{"padding longer than the packet", with(withPadding(valid, 4), func(b []byte) { b[len(b)-1] = 255 })},
		{"padding into the fixed part", with(withPadding(rawTWCC(1, 0, 0, nil), 4), func(b []byte) { b[len(b)-1] = 8 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			_, err := ParseTWCC(tc.pkt, func(uint16, bool, int64) { called = true })
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v, want ErrMalformed", err)
			}
			if called {
				t.Error("fn called")
			}
			t.Log(err)
		})
	}
}

// compound is a receiver's compound RTCP: RR, TWCC, REMB, NACK.
func compound(t testing.TB) ([]rtcp.Packet, []byte) {
	t.Helper()
	twcc := realisticTWCC()
	twcc.Header = rtcp.Header{Type: rtcp.TypeTransportSpecificFeedback, Count: rtcp.FormatTCC, Length: uint16(twcc.MarshalSize()/4 - 1)}
	pkts := []rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2, FractionLost: 3, LastSequenceNumber: 4}}},
		&twcc,
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 2.5e6, SSRCs: []uint32{2, 3}},
		&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 5}}},
	}
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return pkts, b
}

type packet struct {
	pt, fmt uint8
	pkt     []byte
}

func walk(b []byte) ([]packet, error) {
	var got []packet
	err := Packets(b, func(pt, fmt uint8, pkt []byte) { got = append(got, packet{pt, fmt, pkt}) })
	return got, err
}

func TestPackets(t *testing.T) {
	pkts, b := compound(t)
	got, err := walk(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ pt, fmt uint8 }{{201, 1}, {205, 15}, {206, 15}, {205, 1}}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i, g := range got {
		raw, _ := pkts[i].Marshal()
		if g.pt != want[i].pt || g.fmt != want[i].fmt || !slices.Equal(g.pkt, raw) {
			t.Errorf("packet %d: %d/%d, %d bytes; want %d/%d, %d bytes", i, g.pt, g.fmt, len(g.pkt), want[i].pt, want[i].fmt, len(raw))
		}
		if cap(g.pkt) != len(g.pkt) {
			t.Errorf("packet %d: capacity %d past its %d bytes", i, cap(g.pkt), len(g.pkt))
		}
	}
	if _, reports, err := parseTWCC(got[1].pkt); err != nil || len(reports) != 45 {
		t.Errorf("TWCC of the compound: %d reports, %v", len(reports), err)
	}
	if bitrate, ok := ParseREMB(got[2].pkt); !ok || bitrate != 2.5e6 {
		t.Errorf("REMB of the compound: %d, %v", bitrate, ok)
	}

	if got, err := walk(nil); err != nil || len(got) != 0 {
		t.Errorf("empty: %d packets, %v", len(got), err)
	}

	// The RR is 32 bytes.
	for _, tc := range []struct {
		name      string
		b         []byte
		delivered int
	}{
		{"last packet cut", b[:len(b)-4], 3},
		{"2 bytes after", append(slices.Clone(b), 0x80, 0xc9), 4},
		{"3 bytes", b[:3], 0},
		{"second packet's version 0", func() []byte { c := slices.Clone(b); c[32] &= 0x3f; return c }(), 1},
		{"second packet's length past the end", func() []byte { c := slices.Clone(b); c[34] = 0xff; return c }(), 1},
		{"first packet's version 3", func() []byte { c := slices.Clone(b); c[0] |= 0xc0; return c }(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := walk(tc.b)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v, want ErrMalformed", err)
			}
			if len(got) != tc.delivered {
				t.Errorf("%d packets delivered, want %d", len(got), tc.delivered)
			}
			t.Log(err)
		})
	}
}

// rawREMB builds a REMB by hand.
func rawREMB(exp uint8, mantissa uint32, ssrcs ...uint32) []byte {
	b := []byte{0x80 | 15, 206, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 'R', 'E', 'M', 'B', byte(len(ssrcs))}
	b = append(b, exp<<2|byte(mantissa>>16), byte(mantissa>>8), byte(mantissa))
	for _, s := range ssrcs {
		b = binary.BigEndian.AppendUint32(b, s)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)/4-1))
	return b
}

func TestParseREMB(t *testing.T) {
	for _, bitrate := range []float32{1, 1000, 1<<18 - 1, 1 << 18, 1<<18 + 1, 64000, 1.5e6, 2.5e6, 8e6, 1e9, 3.3e12, 1e19} {
		pkt, err := rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 9, Bitrate: bitrate, SSRCs: []uint32{1}}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var p rtcp.ReceiverEstimatedMaximumBitrate
		if err := p.Unmarshal(pkt); err != nil {
			t.Fatal(err)
		}
		got, ok := ParseREMB(pkt)
		if !ok || got != uint64(p.Bitrate) {
			t.Errorf("%g: %d, %v; pion %g", bitrate, got, ok, p.Bitrate)
		}
		// Pion keeps the 18 most significant bits, rounding down.
		if f := float64(bitrate); float64(got) > f || f-float64(got) > f/(1<<17) {
			t.Errorf("%g: %d is not %g rounded down to 18 bits", bitrate, got, bitrate)
		}
	}

	for _, tc := range []struct {
		name string
		pkt  []byte
		want uint64
	}{
		// Pion decodes this one as 2^23: it normalises the mantissa 0
		// as if it had a leading 1.
		{"zero", rawREMB(0, 0), 0},
		{"zero, largest exponent", rawREMB(63, 0), 0},
		{"2^63", rawREMB(63, 1), 1 << 63},
		{"largest without overflow", rawREMB(46, 1<<18-1), (1<<18 - 1) << 46},
		{"overflow by a bit", rawREMB(47, 1<<18-1), math.MaxUint64},
		{"overflow", rawREMB(63, 2), math.MaxUint64},
		{"pion's largest", func() []byte {
			b, _ := rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: math.MaxFloat32}.Marshal()
			return b
		}(), math.MaxUint64},
		{"three SSRCs", rawREMB(10, 1000, 1, 2, 3), 1000 << 10},
		{"padded", withPadding(rawREMB(10, 1000, 1), 4), 1000 << 10},
		// The draft says 0; pion insists, libwebrtc does not look.
		{"media SSRC", func() []byte { b := rawREMB(3, 5); b[11] = 1; return b }(), 40},
	} {
		got, ok := ParseREMB(tc.pkt)
		if !ok || got != tc.want {
			t.Errorf("%s: %d, %v; want %d", tc.name, got, ok, tc.want)
		}
	}

	_, b := compound(t)
	pli, _ := (&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2}).Marshal()
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"empty", nil},
		{"RR", b[:32]},
		{"TWCC", marshalTWCC(t, realisticTWCC())},
		{"PLI", pli},
		{"cut", rawREMB(1, 1, 5)[:20]},
		{"header only", rawREMB(1, 1)[:4]},
		{"16 bytes", func() []byte { b := rawREMB(1, 1)[:16]; b[3] = 3; return b }()},
		{"not REMB", func() []byte { b := rawREMB(1, 1); b[15] = 'X'; return b }()},
		{"more SSRCs than there", func() []byte { b := rawREMB(1, 1, 5); b[16] = 2; return b }()},
		{"fewer SSRCs than there", func() []byte { b := rawREMB(1, 1, 5, 6); b[16] = 1; return b }()},
		{"version 1", func() []byte { b := rawREMB(1, 1); b[0] ^= 0xc0; return b }()},
		{"padding count 0", func() []byte { b := withPadding(rawREMB(1, 1), 4); b[len(b)-1] = 0; return b }()},
		{"padding into the SSRCs", func() []byte { b := rawREMB(1, 1, 5); b[0] |= 0x20; b[23] = 4; return b }()},
	} {
		if got, ok := ParseREMB(tc.pkt); ok {
			t.Errorf("%s: %d, ok", tc.name, got)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	twcc := marshalTWCC(t, realisticTWCC())
	_, b := compound(t)
	remb := rawREMB(10, 1000, 1)
	var sum int64
	if n := testing.AllocsPerRun(100, func() {
		_, err := ParseTWCC(twcc, func(_ uint16, _ bool, arrival int64) { sum += arrival })
		if err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ParseTWCC: %v allocations", n)
	}
	if sum == 0 {
		t.Error("ParseTWCC reported nothing")
	}
	var count int
	if n := testing.AllocsPerRun(100, func() {
		if err := Packets(b, func(uint8, uint8, []byte) { count++ }); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Packets: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := ParseREMB(remb); !ok {
			t.Fatal("REMB not ok")
		}
		// Nor when it says no.
		if _, ok := ParseREMB(remb[:20]); ok {
			t.Fatal("cut REMB ok")
		}
		if _, ok := ParseREMB(twcc); ok {
			t.Fatal("TWCC ok as REMB")
		}
	}); n != 0 {
		t.Errorf("ParseREMB: %v allocations", n)
	}
}

func BenchmarkParseTWCC(b *testing.B) {
	pkt := marshalTWCC(b, realisticTWCC())
	var sum int64
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTWCC(pkt, func(_ uint16, received bool, arrival int64) {
			if received {
				sum += arrival
			}
		}); err != nil {
			b.Fatal(err)
		}
	}
	if sum == 0 {
		b.Fatal("nothing reported")
	}
}

// BenchmarkPionUnmarshalTWCC is pion's parse alone: its chunks and
// deltas still have to be walked to learn each packet's fate.
func BenchmarkPionUnmarshalTWCC(b *testing.B) {
	pkt := marshalTWCC(b, realisticTWCC())
	b.ReportAllocs()
	for b.Loop() {
		var p rtcp.TransportLayerCC
		if err := p.Unmarshal(pkt); err != nil {
			b.Fatal(err)
		}
	}
}
