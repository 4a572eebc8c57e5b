package bench

import (
	"bytes"
	"errors"
	"testing"

	"github.com/focus-sfu/focus/focus/vp8"
)

func TestVP8RoundTrip(t *testing.T) {
	st := Stamp{Layer: 2, Stream: 7, Counter: 123456, Sent: 1_700_000_000_123_456_789}
	for _, tc := range []struct {
		name string
		f    VP8Frame
		want VP8Info
	}{
		{"keyframe start", VP8Frame{Start: true, Keyframe: true, PictureID: 0x1234, Width: 1280, Height: 720}, VP8Info{Start: true, Keyframe: true}},
		{"interframe start", VP8Frame{Start: true, PictureID: 5}, VP8Info{Start: true}},
		{"continuation", VP8Frame{PictureID: 0x7fff}, VP8Info{}},
		{"keyframe flag on a continuation is ignored", VP8Frame{Keyframe: true}, VP8Info{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := AppendVP8(nil, st, tc.f, 1000)
			if len(p) != 1000 {
				t.Fatalf("payload is %d bytes, want 1000", len(p))
			}
			got, info, err := ParseVP8(p)
			if err != nil {
				t.Fatalf("ParseVP8: %v", err)
			}
			want := st
			want.Video = true
			if got != want || info != tc.want {
				t.Errorf("ParseVP8 = %+v %+v, want %+v %+v", got, info, want, tc.want)
			}
			// The descriptor carries the 15-bit picture ID, as browsers send.
			if p[0]&vp8X == 0 || p[1] != vp8I || p[2]&vp8M == 0 || uint16(p[2]&0x7f)<<8|uint16(p[3]) != tc.f.PictureID&0x7fff {
				t.Errorf("descriptor % x does not carry picture ID %#x", p[:4], tc.f.PictureID)
			}
		})
	}
}

func TestVP8KeyframeHeader(t *testing.T) {
	p := AppendVP8(nil, Stamp{}, VP8Frame{Start: true, Keyframe: true, Width: 640, Height: 360}, 100)
	// After the 4-byte descriptor: the frame tag with P=0 and show_frame,
	// the start code, then width and height little-endian.
	hdr := p[4:14]
	if hdr[0]&0x01 != 0 || hdr[0]&0x10 == 0 {
		t.Errorf("frame tag %#x: want a shown keyframe", hdr[0])
	}
	if !bytes.Equal(hdr[3:6], []byte{0x9d, 0x01, 0x2a}) {
		t.Errorf("start code % x", hdr[3:6])
	}
	if w, h := uint16(hdr[6])|uint16(hdr[7])<<8, uint16(hdr[8])|uint16(hdr[9])<<8; w != 640 || h != 360 {
		t.Errorf("size %dx%d, want 640x360", w, h)
	}
}

// An SFU may rewrite the descriptor: drop the extension, shorten the
// picture ID, add TL0PICIDX or TID/KEYIDX. The stamp is still found.
func TestVP8RewrittenDescriptor(t *testing.T) {
	st := Stamp{Video: true, Stream: 3, Counter: 9, Sent: 42}
	body := appendStamp(vp8.AppendFrameHeader(nil, true, 320, 180), st)
	for _, tc := range []struct {
		name string
		desc []byte
	}{
		{"no extension", []byte{vp8S}},
		{"7-bit picture ID", []byte{vp8X | vp8S, vp8I, 0x05}},
		{"picture ID, TL0PICIDX, TID", []byte{vp8X | vp8S, vp8I | vp8L | vp8T, 0x81, 0x02, 0x07, 0x40}},
		{"KEYIDX only", []byte{vp8X | vp8S, vp8K, 0x01}},
		{"extension byte with nothing set", []byte{vp8X | vp8S, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := append(append([]byte(nil), tc.desc...), body...)
			got, info, err := ParseVP8(p)
			if err != nil || got != st || !info.Start || !info.Keyframe {
				t.Errorf("ParseVP8 = %+v %+v %v, want %+v, a keyframe start", got, info, err, st)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	good := AppendVP8(nil, Stamp{Stream: 1}, VP8Frame{Start: true, Keyframe: true}, 200)
	noStart := bytes.Clone(good)
	noStart[4+3] = 0 // break the start code
	for _, tc := range []struct {
		name string
		p    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"truncated extension", []byte{vp8X}, ErrVP8},
		{"truncated picture ID", []byte{vp8X, vp8I}, ErrVP8},
		{"truncated frame tag", []byte{vp8S, 0x10}, ErrVP8},
		{"keyframe without start code", noStart, ErrVP8},
		{"stamp cut short", good[:4+10+StampSize-1], ErrShort},
		{"no stamp", append(bytes.Clone(good[:14]), make([]byte, StampSize)...), ErrNotStamp},
		{"audio stamp in VP8", append([]byte{0x00}, AppendOpus(nil, Stamp{}, 50)[1:]...), ErrNotStamp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseVP8(tc.p); !errors.Is(err, tc.want) {
				t.Errorf("ParseVP8 error = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := ParseOpus(nil); !errors.Is(err, ErrShort) {
		t.Errorf("ParseOpus(nil) = %v, want ErrShort", err)
	}
	if _, err := ParseOpus([]byte{opusTOC, 'x', 'y'}); !errors.Is(err, ErrShort) {
		t.Errorf("ParseOpus(short) = %v, want ErrShort", err)
	}
}

func TestOpusRoundTrip(t *testing.T) {
	st := Stamp{Stream: 4, Counter: 1 << 31, Sent: -1}
	p := AppendOpus([]byte("prefix"), st, 100)
	if len(p) != 6+100 || p[6] != opusTOC {
		t.Fatalf("payload %d bytes, TOC %#x", len(p)-6, p[6])
	}
	got, err := ParseOpus(p[6:])
	if err != nil || got != st {
		t.Errorf("ParseOpus = %+v %v, want %+v", got, err, st)
	}
	// A size too small for TOC and stamp is raised to fit them.
	if p := AppendOpus(nil, st, 3); len(p) != 1+StampSize {
		t.Errorf("tiny payload is %d bytes, want %d", len(p), 1+StampSize)
	}
}

// The generator writes and parses every packet; neither may allocate.
func TestPayloadAllocations(t *testing.T) {
	buf := make([]byte, 0, 1500)
	st := Stamp{Stream: 1}
	f := VP8Frame{Start: true, Keyframe: true, Width: 1280, Height: 720}
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendVP8(buf[:0], st, f, 1000)
		if _, _, err := ParseVP8(buf); err != nil {
			t.Fatal(err)
		}
		buf = AppendOpus(buf[:0], st, 100)
		if _, err := ParseOpus(buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per packet, want 0", n)
	}
}

func TestRTPPayload(t *testing.T) {
	payload := []byte{1, 2, 3, 4, 5}
	hdr := []byte{0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}
	withCSRC := append([]byte{0x82, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}, make([]byte, 8)...)
	withExt := append([]byte{0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1}, 0x10, 0xff, 0, 0)
	padded := append(append([]byte{0xa0, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}, payload...), 0, 0, 3)
	for _, tc := range []struct {
		name string
		pkt  []byte
		want []byte
		ok   bool
	}{
		{"plain", append(bytes.Clone(hdr), payload...), payload, true},
		{"CSRCs", append(withCSRC, payload...), payload, true},
		{"extension", append(withExt, payload...), payload, true},
		{"padding", padded, payload, true},
		{"padding only", []byte{0xa0, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 2}, []byte{}, true},
		{"short", hdr[:11], nil, false},
		{"version 0", append([]byte{0x00}, hdr[1:]...), nil, false},
		{"extension past the end", withExt[:14], nil, false},
		{"padding past the end", []byte{0xa0, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := rtpPayload(tc.pkt)
			if ok != tc.ok || !bytes.Equal(got, tc.want) {
				t.Errorf("rtpPayload = % x %v, want % x %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseVP8(f *testing.F) {
	f.Add(AppendVP8(nil, Stamp{Stream: 1, Counter: 2, Sent: 3}, VP8Frame{Start: true, Keyframe: true}, 100))
	f.Add(AppendVP8(nil, Stamp{}, VP8Frame{Start: true}, 30))
	f.Add(AppendVP8(nil, Stamp{}, VP8Frame{}, 24))
	f.Add([]byte{vp8X | vp8S, vp8I | vp8L | vp8T | vp8K, 0x80})
	f.Fuzz(func(t *testing.T, p []byte) {
		st, info, err := ParseVP8(p)
		if err != nil {
			return
		}
		if !st.Video {
			t.Fatalf("accepted a stamp without the video flag: %+v", st)
		}
		if info.Keyframe && !info.Start {
			t.Fatalf("keyframe without start: %+v", info)
		}
		// An accepted payload holds a whole stamp after its header.
		i := bytes.Index(p, []byte{stampM0, stampM1})
		if i < 0 || len(p)-i < StampSize {
			t.Fatalf("no stamp bytes in an accepted payload % x", p)
		}
	})
}

func FuzzParseOpus(f *testing.F) {
	f.Add(AppendOpus(nil, Stamp{Stream: 1, Counter: 2, Sent: 3}, 100))
	f.Add([]byte{opusTOC})
	f.Fuzz(func(t *testing.T, p []byte) {
		st, err := ParseOpus(p)
		if err != nil {
			return
		}
		// The stamp re-encodes to the bytes it came from, but for the
		// flag bits the parser does not read.
		enc := appendStamp(nil, st)
		raw := bytes.Clone(p[1 : 1+StampSize])
		raw[2] &= flagVideo
		if !bytes.Equal(enc, raw) {
			t.Fatalf("stamp %+v re-encodes to % x, not % x", st, enc, raw)
		}
	})
}

func FuzzRTPPayload(f *testing.F) {
	f.Add([]byte{0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2})
	f.Add([]byte{0xb3, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		got, ok := rtpPayload(p)
		if !ok {
			return
		}
		if len(got) > len(p)-12 {
			t.Fatalf("payload of %d bytes from a %d-byte packet", len(got), len(p))
		}
	})
}
