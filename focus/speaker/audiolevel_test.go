package speaker

import (
	"math"
	"testing"
)

func TestParseAudioLevel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ext   []byte
		level uint8
		voice bool
		ok    bool
	}{
		{"absent", nil, 0, false, false},
		{"empty", []byte{}, 0, false, false},
		{"too long", []byte{0x1e, 0x00}, 0, false, false},
		{"loudest", []byte{0x00}, 0, false, true},
		{"loudest voice", []byte{0x80}, 0, true, true},
		{"silence", []byte{0x7f}, 127, false, true},
		{"silence voice", []byte{0xff}, 127, true, true},
		{"-30 dBov voice", []byte{0x80 | 30}, 30, true, true},
		{"-50 dBov", []byte{50}, 50, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			level, voice, ok := ParseAudioLevel(tc.ext)
			if level != tc.level || voice != tc.voice || ok != tc.ok {
				t.Errorf("ParseAudioLevel(%x) = %d, %v, %v; want %d, %v, %v",
					tc.ext, level, voice, ok, tc.level, tc.voice, tc.ok)
			}
		})
	}
}

func TestLinear(t *testing.T) {
	for _, tc := range []struct{ level, want float64 }{
		{0, 1}, {20, 0.1}, {40, 0.01}, {50, DefaultThreshold}, {127, 4.466835921509635e-07},
	} {
		if got := Linear(tc.level); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("Linear(%v) = %v, want %v", tc.level, got, tc.want)
		}
	}
}

// FuzzParseAudioLevel checks that any extension value parses without
// panicking, to a level a Meter accepts, and that the parse is exact.
func FuzzParseAudioLevel(f *testing.F) {
	for _, s := range [][]byte{nil, {}, {0}, {0x80}, {0x7f}, {0xff}, {0x9e}, {1, 2}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ext []byte) {
		level, voice, ok := ParseAudioLevel(ext)
		if ok != (len(ext) == 1) {
			t.Fatalf("ok = %v for %d bytes", ok, len(ext))
		}
		if !ok {
			if level != 0 || voice {
				t.Fatalf("not ok but level %d voice %v", level, voice)
			}
			return
		}
		if level > maxLevel || level != ext[0]&0x7f || voice != (ext[0]&0x80 != 0) {
			t.Fatalf("ParseAudioLevel(%x) = %d, %v", ext, level, voice)
		}
		var m Meter
		m.Observe(level)
		s := m.Take()
		if s.Packets != 1 || s.Level < 0 || s.Level > 1 {
			t.Fatalf("level %d: sample %+v", level, s)
		}
	})
}
