package vp8

import (
	"testing"
)

// frame is one picture of a test stream: its values in the publisher's
// numbering and how many packets it takes.
type frame struct {
	pic     uint16
	tl0     uint8
	tid     uint8
	key     uint8
	packets int
}

func desc(f frame, long bool) Descriptor {
	return Descriptor{Size: 6, S: true, HasPictureID: true, PictureID: f.pic, LongPictureID: long,
		HasTL0PICIDX: true, TL0PICIDX: f.tl0, HasTID: true, TID: f.tid, HasKEYIDX: true, KEYIDX: f.key}
}

// stream returns n frames from pic0 with the L1T3 pattern TID 0,2,1,2,...,
// TL0PICIDX counting TID 0 frames from tl00 and KEYIDX fixed.
func stream(n int, pic0 uint16, long bool, tl00, key uint8, packets int) []frame {
	mask := pictureIDMask(long)
	pattern := [4]uint8{0, 2, 1, 2}
	fs := make([]frame, n)
	tl0 := tl00 - 1
	for i := range fs {
		tid := pattern[i%4]
		if tid == 0 {
			tl0++
		}
		fs[i] = frame{pic: (pic0 + uint16(i)) & mask, tl0: tl0, tid: tid, key: key, packets: packets}
	}
	return fs
}

// sent is one packet the munger let through.
type sent struct {
	pic      uint16
	tl0, key uint8
	changed  bool
}

// run feeds frames through m and returns what was sent, checking the
// per-packet invariants on the way.
func run(t *testing.T, m *Munger, fs []frame, long bool, maxTID int) []sent {
	t.Helper()
	var out []sent
	for _, f := range fs {
		for range f.packets {
			in := desc(f, long)
			var o Descriptor
			drop, changed := m.Rewrite(&in, maxTID, &o)
			wantDrop := maxTID >= 0 && int(f.tid) > maxTID
			if drop != wantDrop {
				t.Fatalf("frame %+v, maxTID %d: drop=%v", f, maxTID, drop)
			}
			if drop {
				continue
			}
			if changed != (o != in) {
				t.Fatalf("frame %+v: changed=%v but out %+v, in %+v", f, changed, o, in)
			}
			if o.MarshalSize() != in.MarshalSize() || o.LongPictureID != long {
				t.Fatalf("frame %+v: rewrite changed the descriptor size or width", f)
			}
			if _, err := o.MarshalTo(make([]byte, 8)); err != nil {
				t.Fatalf("frame %+v: %v", f, err)
			}
			out = append(out, sent{o.PictureID, o.TL0PICIDX, o.KEYIDX, changed})
		}
	}
	return out
}

// checkContinuous checks that consecutive sent pictures differ by one
// picture ID (packets of one picture share it), that TL0PICIDX never skips
// and that KEYIDX never skips, starting one after prev when given.
func checkContinuous(t *testing.T, s []sent, mask uint16, prev *sent) {
	t.Helper()
	for i := range s {
		var p sent
		switch {
		case i > 0:
			p = s[i-1]
		case prev != nil:
			p = *prev
			if s[0].pic != (p.pic+1)&mask || s[0].tl0 != p.tl0+1 || s[0].key != (p.key+1)&0x1f {
				t.Fatalf("first after switch %+v does not continue %+v", s[0], p)
			}
			continue
		default:
			continue
		}
		if d := (s[i].pic - p.pic) & mask; d > 1 {
			t.Fatalf("packet %d: picture ID %d after %d", i, s[i].pic, p.pic)
		}
		if d := s[i].tl0 - p.tl0; d > 1 {
			t.Fatalf("packet %d: TL0PICIDX %d after %d", i, s[i].tl0, p.tl0)
		}
		if s[i].key != p.key {
			t.Fatalf("packet %d: KEYIDX %d after %d", i, s[i].key, p.key)
		}
	}
}

func TestMungerFirstSourceIdentity(t *testing.T) {
	for _, tc := range []struct {
		name       string
		callSwitch bool
		long       bool
	}{
		{"no switch call, 15-bit", false, true},
		{"switch call, 15-bit", true, true},
		{"switch call, 7-bit", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Munger
			fs := stream(300, 100, tc.long, 250, 7, 2) // wraps picture ID (7-bit) and TL0PICIDX
			if tc.callSwitch {
				d := desc(fs[0], tc.long)
				m.SwitchSource(&d)
			}
			for i, s := range run(t, &m, fs, tc.long, -1) {
				f := fs[i/2]
				if s.changed || s.pic != f.pic || s.tl0 != f.tl0 || s.key != f.key {
					t.Fatalf("packet %d: %+v, want identity of %+v", i, s, f)
				}
			}
		})
	}
}

func TestMungerRollover(t *testing.T) {
	for _, tc := range []struct {
		name string
		long bool
		pic0 uint16
	}{
		{"7-bit", false, 120},
		{"15-bit", true, 32760},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mask := pictureIDMask(tc.long)
			var m Munger
			a := stream(20, tc.pic0, tc.long, 254, 31, 1)
			sa := run(t, &m, a, tc.long, 1) // drops across the wrap too
			checkContinuous(t, sa, mask, nil)
			if last := sa[len(sa)-1].pic; last >= tc.pic0 {
				t.Fatalf("output did not wrap: last picture ID %d", last)
			}
			// Switch to a source whose picture IDs sit right before the
			// wrap, while the output is just past it.
			b := stream(20, mask-2, tc.long, 9, 3, 3)
			d := desc(b[0], tc.long)
			m.SwitchSource(&d)
			sb := run(t, &m, b, tc.long, -1)
			checkContinuous(t, sb, mask, &sa[len(sa)-1])
		})
	}
}

func TestMungerSwitch(t *testing.T) {
	for _, tc := range []struct {
		name         string
		longA, longB bool
	}{
		{"15 to 15", true, true},
		{"15 to 7", true, false},
		{"7 to 15", false, true},
		{"7 to 7", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Munger
			a := stream(37, 1000&pictureIDMask(tc.longA), tc.longA, 200, 30, 2)
			b := stream(41, 20000&pictureIDMask(tc.longB), tc.longB, 5, 3, 2)
			c := stream(9, 3, tc.longA, 77, 12, 1)

			sa := run(t, &m, a, tc.longA, -1)
			d := desc(b[0], tc.longB)
			m.SwitchSource(&d)
			sb := run(t, &m, b, tc.longB, -1)
			checkContinuous(t, sb, pictureIDMask(tc.longB), &sa[len(sa)-1])
			if !sb[0].changed {
				t.Fatal("first packet of the new source reported unchanged")
			}
			// Switching back continues the output again.
			d = desc(c[0], tc.longA)
			m.SwitchSource(&d)
			sc := run(t, &m, c, tc.longA, -1)
			last := sb[len(sb)-1]
			last.pic &= pictureIDMask(tc.longA)
			checkContinuous(t, sc, pictureIDMask(tc.longA), &last)
		})
	}
}

// TestMungerKeyIdxTL0Continuity switches at a keyframe whose KEYIDX and
// TL0PICIDX wrap in the output.
func TestMungerKeyIdxTL0Continuity(t *testing.T) {
	var m Munger
	a := stream(8, 10, true, 254, 31, 1) // TL0PICIDX 254, 255; KEYIDX 31
	sa := run(t, &m, a, true, -1)
	b := stream(8, 500, true, 100, 0, 1)
	d := desc(b[0], true)
	m.SwitchSource(&d)
	sb := run(t, &m, b, true, -1)
	if got := sb[0]; got.tl0 != 0 || got.key != 0 || got.pic != 18 {
		t.Fatalf("first after switch = %+v, want picture 18, TL0PICIDX 0, KEYIDX 0", got)
	}
	checkContinuous(t, sb, 0x7fff, &sa[len(sa)-1])
}

func TestMungerTemporalDrop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		maxTID int
		sent   int // frames sent of 40
	}{
		{"all", -1, 40},
		{"up to TID 2", 2, 40},
		{"up to TID 1", 1, 20},
		{"base only", 0, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Munger
			fs := stream(40, 32750, true, 10, 4, 3)
			s := run(t, &m, fs, true, tc.maxTID)
			if len(s) != tc.sent*3 {
				t.Fatalf("%d packets sent, want %d", len(s), tc.sent*3)
			}
			checkContinuous(t, s, 0x7fff, nil)
			if s[len(s)-1].pic != (32750+uint16(tc.sent)-1)&0x7fff {
				t.Fatalf("last picture ID %d, want %d: gap in output", s[len(s)-1].pic, 32750+tc.sent-1)
			}
		})
	}
}

// TestMungerDropThenSwitch: a switch after dropped pictures continues from
// the last picture sent, not from the last one seen.
func TestMungerDropThenSwitch(t *testing.T) {
	var m Munger
	a := stream(6, 50, true, 1, 1, 1) // TIDs 0 2 1 2 0 2: last one dropped at maxTID 1
	sa := run(t, &m, a, true, 1)
	b := stream(4, 9000, true, 40, 9, 1)
	d := desc(b[0], true)
	m.SwitchSource(&d)
	sb := run(t, &m, b, true, 1)
	checkContinuous(t, sb, 0x7fff, &sa[len(sa)-1])
}

// TestMungerDropLatched: a maxTID change in the middle of a picture does
// not split it.
func TestMungerDropLatched(t *testing.T) {
	var m Munger
	f := []frame{{pic: 1, tid: 0}, {pic: 2, tid: 1}, {pic: 3, tid: 0}}
	rw := func(f frame, maxTID int) (bool, uint16) {
		d := desc(f, true)
		drop, _ := m.Rewrite(&d, maxTID, &d)
		return drop, d.PictureID
	}
	rw(f[0], -1)
	if drop, _ := rw(f[1], 0); !drop {
		t.Fatal("TID 1 packet not dropped at maxTID 0")
	}
	if drop, _ := rw(f[1], -1); !drop {
		t.Fatal("rest of a dropped picture forwarded after maxTID rose")
	}
	if drop, pic := rw(f[2], 0); drop || pic != 2 {
		t.Fatalf("next picture: drop=%v, picture %d; want kept as 2", drop, pic)
	}
	if drop, pic := rw(f[2], -1); drop || pic != 2 {
		t.Fatalf("second packet: drop=%v, picture %d", drop, pic)
	}
}

func TestMungerNeverDropped(t *testing.T) {
	var m Munger
	for _, d := range []Descriptor{
		{HasTID: true, TID: 0, HasPictureID: true, PictureID: 5},
		{HasPictureID: true, PictureID: 6}, // no TID: never dropped
		{HasTID: false, TID: 3, HasPictureID: true, PictureID: 7},
	} {
		if drop, _ := m.Rewrite(&d, 0, &d); drop {
			t.Fatalf("%+v dropped at maxTID 0", d)
		}
	}
}

// TestMungerReordered documents the limitation: a late packet of an older
// picture maps with the current offset.
func TestMungerReordered(t *testing.T) {
	var m Munger
	rw := func(pic uint16, tid uint8, maxTID int) (bool, uint16) {
		d := Descriptor{HasPictureID: true, LongPictureID: true, PictureID: pic, HasTID: true, TID: tid}
		drop, _ := m.Rewrite(&d, maxTID, &d)
		return drop, d.PictureID
	}
	for _, tc := range []struct {
		pic      uint16
		tid      uint8
		wantDrop bool
		wantPic  uint16
	}{
		{10, 0, false, 10},
		{12, 0, false, 12},
		{11, 0, false, 11}, // late, no drop in between: exact
		{13, 1, true, 0},
		{14, 0, false, 13},
		{11, 0, false, 10}, // late across a drop: off by one (documented)
		{13, 1, true, 0},   // late packet of the dropped picture is still dropped
	} {
		drop, pic := rw(tc.pic, tc.tid, 0)
		if drop != tc.wantDrop || (!drop && pic != tc.wantPic) {
			t.Fatalf("picture %d: drop=%v pic=%d; want drop=%v pic=%d", tc.pic, drop, pic, tc.wantDrop, tc.wantPic)
		}
	}
}

// TestMungerPendingFields: a switch packet without a picture ID defers the
// picture ID offset to the first packet that has one.
func TestMungerPendingFields(t *testing.T) {
	var m Munger
	d := Descriptor{HasPictureID: true, LongPictureID: true, PictureID: 100, HasTL0PICIDX: true, TL0PICIDX: 50}
	m.Rewrite(&d, -1, &d)
	sw := Descriptor{S: true}
	m.SwitchSource(&sw)
	m.Rewrite(&sw, -1, &sw)
	d = Descriptor{HasPictureID: true, LongPictureID: true, PictureID: 7000, HasTL0PICIDX: true, TL0PICIDX: 3}
	if _, changed := m.Rewrite(&d, -1, &d); !changed || d.PictureID != 101 || d.TL0PICIDX != 51 {
		t.Fatalf("after switch: %+v, want picture 101, TL0PICIDX 51", d)
	}
}

func TestMungerAllocs(t *testing.T) {
	var m Munger
	in := desc(frame{pic: 1, tid: 1}, true)
	var out Descriptor
	if a := testing.AllocsPerRun(1000, func() {
		in.PictureID = (in.PictureID + 1) & 0x7fff
		in.TID = uint8(in.PictureID & 3)
		m.Rewrite(&in, 1, &out)
	}); a != 0 {
		t.Fatalf("Rewrite: %v allocs per run", a)
	}
	p := keyframe([]byte{0x90, 0xf0, 0x81, 0x02, 0x33, 0xb5}, true, 640, 360)
	var d Descriptor
	if a := testing.AllocsPerRun(1000, func() {
		_ = d.Unmarshal(p)
		_, _ = d.MarshalTo(p)
		IsKeyframe(p, &d)
		KeyframeSize(p, &d)
		_ = d.Unmarshal(p[:2]) // the error path too
	}); a != 0 {
		t.Fatalf("Unmarshal/MarshalTo/KeyframeSize: %v allocs per run", a)
	}
}

// FuzzMunger drives a munger with arbitrary descriptors, switches and
// maxTIDs: it must not panic, and what it sends must marshal at the size of
// the input (the caller overwrites the descriptor in place).
func FuzzMunger(f *testing.F) {
	f.Add([]byte{0x90, 0xf0, 0x81, 0x02, 0x33, 0xb5, 0x00, 0x01, 0x90, 0xe0, 0x85, 0x02, 0x34, 0x40, 0x00})
	f.Fuzz(func(t *testing.T, p []byte) {
		var m Munger
		for len(p) > 2 {
			ctl := p[0]
			p = p[1:]
			var d Descriptor
			if err := d.Unmarshal(p); err != nil {
				return
			}
			if ctl&0x80 != 0 {
				m.SwitchSource(&d)
			}
			var out Descriptor
			drop, changed := m.Rewrite(&d, int(ctl&0x07)-4, &out)
			if !drop {
				if changed == (out == d) {
					t.Fatalf("changed=%v for in %+v out %+v", changed, d, out)
				}
				buf := make([]byte, d.Size)
				if n, err := out.MarshalTo(buf); err != nil || n != d.Size {
					t.Fatalf("MarshalTo: %d, %v; want %d bytes", n, err, d.Size)
				}
			}
			p = p[d.Size:]
		}
	})
}

func BenchmarkRewrite(b *testing.B) {
	var m Munger
	fs := stream(64, 0, true, 0, 0, 1)
	ds := make([]Descriptor, len(fs))
	for i, f := range fs {
		ds[i] = desc(f, true)
	}
	var out Descriptor
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d := &ds[i&63]
		if i&63 == 0 {
			m.SwitchSource(d) // keeps the offsets moving
		}
		m.Rewrite(d, 1, &out)
		i++
	}
}
