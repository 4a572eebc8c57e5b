package vp8

import (
	"bytes"
	"errors"
	"testing"
)

func TestUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want Descriptor // unexported fields are checked by the round trip
		err  error
	}{
		{name: "minimal", in: []byte{0x10, 0x00}, want: Descriptor{Size: 1, S: true}},
		{name: "N and PID", in: []byte{0x23, 0xff}, want: Descriptor{Size: 1, N: true, PID: 3}},
		{name: "7-bit picture ID", in: []byte{0x90, 0x80, 0x7f, 0x00},
			want: Descriptor{Size: 3, S: true, HasPictureID: true, PictureID: 127}},
		{name: "15-bit picture ID", in: []byte{0x90, 0x80, 0xff, 0xfe, 0x00},
			want: Descriptor{Size: 4, S: true, HasPictureID: true, LongPictureID: true, PictureID: 0x7ffe}},
		{name: "all fields", in: []byte{0x90, 0xf0, 0x81, 0x02, 0x33, 0xb5, 0x00},
			want: Descriptor{Size: 6, S: true, HasPictureID: true, LongPictureID: true, PictureID: 0x102,
				HasTL0PICIDX: true, TL0PICIDX: 0x33, HasTID: true, TID: 2, Y: true, HasKEYIDX: true, KEYIDX: 0x15}},
		{name: "T only", in: []byte{0x80, 0x20, 0x40, 0x00}, want: Descriptor{Size: 3, HasTID: true, TID: 1}},
		{name: "K only", in: []byte{0x80, 0x10, 0x1f, 0x00}, want: Descriptor{Size: 3, HasKEYIDX: true, KEYIDX: 31}},
		{name: "L only", in: []byte{0x80, 0x40, 0x07, 0x00}, want: Descriptor{Size: 3, HasTL0PICIDX: true, TL0PICIDX: 7}},
		{name: "empty extension", in: []byte{0x80, 0x00, 0x00}, want: Descriptor{Size: 2}},
		{name: "empty", in: nil, err: ErrShort},
		{name: "no VP8 data", in: []byte{0x10}, err: ErrShort},
		{name: "no X byte", in: []byte{0x80}, err: ErrShort},
		{name: "no picture ID", in: []byte{0x80, 0x80}, err: ErrShort},
		{name: "half a long picture ID", in: []byte{0x80, 0x80, 0x80}, err: ErrShort},
		{name: "no TL0PICIDX", in: []byte{0x80, 0xc0, 0x01}, err: ErrShort},
		{name: "no T/K byte", in: []byte{0x80, 0xe0, 0x01, 0x02}, err: ErrShort},
		{name: "descriptor only", in: []byte{0x80, 0xf0, 0x01, 0x02, 0x03}, err: ErrShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d Descriptor
			err := d.Unmarshal(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Unmarshal: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			got := d
			got.ext, got.rsv, got.rsvExt, got.tkRest = false, 0, 0, 0
			if got != tc.want {
				t.Fatalf("Unmarshal = %+v\nwant        %+v", got, tc.want)
			}
			checkRoundTrip(t, tc.in)
		})
	}
}

// checkRoundTrip checks that MarshalTo reproduces the descriptor bytes of
// a payload that Unmarshal accepts.
func checkRoundTrip(t *testing.T, payload []byte) {
	t.Helper()
	var d Descriptor
	if err := d.Unmarshal(payload); err != nil {
		return
	}
	if d.MarshalSize() != d.Size {
		t.Fatalf("% x: MarshalSize %d, Size %d", payload, d.MarshalSize(), d.Size)
	}
	buf := make([]byte, d.Size)
	n, err := d.MarshalTo(buf)
	if err != nil {
		t.Fatalf("% x: MarshalTo: %v", payload, err)
	}
	if !bytes.Equal(buf[:n], payload[:d.Size]) {
		t.Fatalf("MarshalTo = % x, want % x", buf[:n], payload[:d.Size])
	}
}

// TestRoundTripReserved checks that bits this package does not interpret
// survive a rewrite.
func TestRoundTripReserved(t *testing.T) {
	for _, in := range [][]byte{
		{0x48, 0x00},                   // R bits of the first byte
		{0xc8, 0x0f, 0x00},             // and RSV bits of the X byte
		{0x80, 0x20, 0x1f, 0x00},       // T without K: KEYIDX bits kept
		{0x80, 0x10, 0xe5, 0x00},       // K without T: TID and Y bits kept
		{0x80, 0x80, 0x00, 0x00},       // 7-bit picture ID 0
		{0x80, 0x80, 0x80, 0x00, 0x00}, // 15-bit picture ID 0
	} {
		checkRoundTrip(t, in)
	}
}

func TestMarshalTo(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Descriptor
		buf  int
		want []byte
		err  error
	}{
		{name: "minimal", d: Descriptor{S: true, PID: 1}, buf: 1, want: []byte{0x11}},
		{name: "built 15-bit", d: Descriptor{HasPictureID: true, LongPictureID: true, PictureID: 0x1234, HasTID: true, TID: 1},
			buf: 8, want: []byte{0x80, 0xa0, 0x92, 0x34, 0x40}},
		{name: "buffer too small", d: Descriptor{HasPictureID: true, PictureID: 3}, buf: 2, err: ErrBuffer},
		{name: "7-bit overflow", d: Descriptor{HasPictureID: true, PictureID: 128}, buf: 8, err: ErrOverflow},
		{name: "15-bit overflow", d: Descriptor{HasPictureID: true, LongPictureID: true, PictureID: 0x8000}, buf: 8, err: ErrOverflow},
		{name: "TID overflow", d: Descriptor{HasTID: true, TID: 4}, buf: 8, err: ErrOverflow},
		{name: "KEYIDX overflow", d: Descriptor{HasKEYIDX: true, KEYIDX: 32}, buf: 8, err: ErrOverflow},
		{name: "PID overflow", d: Descriptor{PID: 8}, buf: 8, err: ErrOverflow},
		{name: "absent field ignored", d: Descriptor{PictureID: 999}, buf: 1, want: []byte{0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, tc.buf)
			n, err := tc.d.MarshalTo(buf)
			if !errors.Is(err, tc.err) {
				t.Fatalf("MarshalTo: %v, want %v", err, tc.err)
			}
			if err == nil && !bytes.Equal(buf[:n], tc.want) {
				t.Fatalf("MarshalTo = % x, want % x", buf[:n], tc.want)
			}
		})
	}
}

// keyframe returns a payload: descriptor, then a VP8 keyframe header of
// w×h (or an interframe tag when !key).
func keyframe(desc []byte, key bool, w, h uint16) []byte {
	tag := byte(0x10)
	if !key {
		tag |= 0x01
	}
	p := append([]byte{}, desc...)
	return append(p, tag, 0x02, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8), byte(h), byte(h>>8), 0xaa)
}

func TestKeyframe(t *testing.T) {
	long := []byte{0x90, 0x80, 0x81, 0x02}
	for _, tc := range []struct {
		name   string
		in     []byte
		key    bool
		w, h   uint16
		sizeOK bool
	}{
		{name: "keyframe", in: keyframe([]byte{0x10}, true, 1280, 720), key: true, w: 1280, h: 720, sizeOK: true},
		{name: "keyframe after extension", in: keyframe(long, true, 320, 180), key: true, w: 320, h: 180, sizeOK: true},
		{name: "scale bits masked", in: keyframe([]byte{0x10}, true, 0xc000|640, 0x4000|480), key: true, w: 640, h: 480, sizeOK: true},
		{name: "interframe", in: keyframe([]byte{0x10}, false, 1280, 720)},
		{name: "not partition start", in: keyframe([]byte{0x00}, true, 1280, 720)},
		{name: "partition 1", in: keyframe([]byte{0x11}, true, 1280, 720)},
		{name: "truncated header", in: keyframe([]byte{0x10}, true, 1280, 720)[:9], key: true},
		{name: "bad start code", in: []byte{0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2b, 0, 5, 0, 5}, key: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d Descriptor
			if err := d.Unmarshal(tc.in); err != nil {
				t.Fatal(err)
			}
			if got := IsKeyframe(tc.in, &d); got != tc.key {
				t.Fatalf("IsKeyframe = %v, want %v", got, tc.key)
			}
			w, h, ok := KeyframeSize(tc.in, &d)
			if ok != tc.sizeOK || w != tc.w || h != tc.h {
				t.Fatalf("KeyframeSize = %d, %d, %v; want %d, %d, %v", w, h, ok, tc.w, tc.h, tc.sizeOK)
			}
		})
	}
	// A zero Descriptor (never parsed) must not read the descriptor as VP8 data.
	if IsKeyframe([]byte{0x10, 0x00}, &Descriptor{S: true}) {
		t.Fatal("IsKeyframe with an unparsed descriptor")
	}
}

func FuzzDescriptor(f *testing.F) {
	for _, s := range [][]byte{
		{0x10, 0x00},
		{0x90, 0xf0, 0x81, 0x02, 0x33, 0xb5, 0x00},
		{0x90, 0x80, 0x7f, 0x00},
		{0xc8, 0x0f, 0x00},
		{0x80, 0x10, 0xe5, 0x00},
		keyframe([]byte{0x90, 0x80, 0x81, 0x02}, true, 640, 360),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var d Descriptor
		if err := d.Unmarshal(p); err != nil {
			return
		}
		if d.Size < 1 || d.Size >= len(p) {
			t.Fatalf("% x: Size %d out of range", p, d.Size)
		}
		checkRoundTrip(t, p)
		IsKeyframe(p, &d)
		if w, h, ok := KeyframeSize(p, &d); ok && (w > 0x3fff || h > 0x3fff) {
			t.Fatalf("% x: size %dx%d", p, w, h)
		}
	})
}

func BenchmarkUnmarshal(b *testing.B) {
	p := keyframe([]byte{0x90, 0xf0, 0x81, 0x02, 0x33, 0xb5}, true, 640, 360)
	var d Descriptor
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Unmarshal(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalTo(b *testing.B) {
	p := keyframe([]byte{0x90, 0xf0, 0x81, 0x02, 0x33, 0xb5}, true, 640, 360)
	var d Descriptor
	if err := d.Unmarshal(p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.MarshalTo(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyframeSize(b *testing.B) {
	p := keyframe([]byte{0x90, 0xf0, 0x81, 0x02, 0x33, 0xb5}, true, 640, 360)
	var d Descriptor
	if err := d.Unmarshal(p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		KeyframeSize(p, &d)
	}
}

// TestAppendFrameHeader checks the synthetic frame header reads back as
// what it was made as.
func TestAppendFrameHeader(t *testing.T) {
	desc := Descriptor{S: true}
	buf := make([]byte, desc.MarshalSize())
	if _, err := desc.MarshalTo(buf); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  bool
		w, h uint16
	}{{true, 1280, 720}, {true, 16383, 1}, {false, 640, 360}} {
		p := AppendFrameHeader(append([]byte(nil), buf...), tc.key, tc.w, tc.h)
		var d Descriptor
		if err := d.Unmarshal(p); err != nil {
			t.Fatal(err)
		}
		if IsKeyframe(p, &d) != tc.key {
			t.Fatalf("keyframe %v read as %v", tc.key, !tc.key)
		}
		w, h, ok := KeyframeSize(p, &d)
		if tc.key && (!ok || w != tc.w || h != tc.h) {
			t.Fatalf("keyframe %dx%d read as %dx%d %v", tc.w, tc.h, w, h, ok)
		}
		if !tc.key && ok {
			t.Fatal("a delta frame has a keyframe size")
		}
	}
}
