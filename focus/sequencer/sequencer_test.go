package sequencer

import (
	"sync"
	"testing"
	"time"
	"unsafe"
)

var t0 = time.Unix(1700000000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func entry(seq uint16) Entry {
	return Entry{Layer: int8(seq % 3), SourceSeq: seq + 1000, Timestamp: uint32(seq) * 3000, Marker: seq%2 == 0,
		VP8: true, PictureID: seq & 0x7fff, TL0PICIDX: uint8(seq), KEYIDX: uint8(seq) & 31}
}

func TestNewRounds(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, 1}, {1, 1}, {500, 512}, {512, 512}, {1 << 15, 1 << 15}, {1 << 20, 1 << 15}} {
		if got := len(New(tc.in).slots); got != tc.want {
			t.Errorf("New(%d): %d slots, want %d", tc.in, got, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	type push struct {
		seq uint16
		ms  int
	}
	type look struct {
		seq  uint16
		ms   int
		want bool
	}
	for _, tc := range []struct {
		name   string
		slots  int
		pushes []push
		looks  []look
	}{
		{name: "unknown before any push", slots: 16, looks: []look{{5, 1000, false}}},
		{name: "first resend at once", slots: 16, pushes: []push{{5, 0}}, looks: []look{{5, 1, true}, {5, 99, false}, {5, 101, true}}},
		{name: "interval restarts at each resend", slots: 16, pushes: []push{{5, 0}},
			looks: []look{{5, 150, true}, {5, 200, false}, {5, 249, false}, {5, 250, true}}},
		{name: "at most three resends", slots: 16, pushes: []push{{5, 0}},
			looks: []look{{5, 100, true}, {5, 200, true}, {5, 300, true}, {5, 400, false}, {5, 10000, false}}},
		{name: "never pushed", slots: 16, pushes: []push{{5, 0}, {7, 0}}, looks: []look{{6, 500, false}}},
		{name: "future seq", slots: 16, pushes: []push{{5, 0}}, looks: []look{{6, 500, false}}},
		{name: "overwritten slot", slots: 16, pushes: []push{{5, 0}, {21, 0}}, looks: []look{{5, 500, false}, {21, 500, true}}},
		{name: "too old after jump", slots: 16, pushes: []push{{5, 0}, {100, 0}}, looks: []look{{5, 500, false}}},
		{name: "oldest in reach", slots: 16, pushes: []push{{5, 0}, {20, 0}}, looks: []look{{5, 500, true}}},
		{name: "wrap", slots: 16, pushes: []push{{65534, 0}, {65535, 0}, {0, 0}, {1, 0}},
			looks: []look{{65534, 100, true}, {65535, 100, true}, {0, 100, true}, {1, 100, true}, {2, 100, false}}},
		{name: "late push does not move highest back", slots: 16, pushes: []push{{30, 0}, {20, 0}}, looks: []look{{20, 100, true}, {30, 100, true}}},
		// A packet forwarded after newer ones filled the gap a receiver
		// may have NACKed already: that NACK crossed it, so its first
		// resend waits the interval too. In-order packets do not wait.
		{name: "late packet's first resend waits", slots: 16, pushes: []push{{10, 0}, {12, 5}, {11, 20}},
			looks: []look{{11, 21, false}, {12, 21, true}, {11, 119, false}, {11, 120, true}, {11, 150, false}}},
		{name: "clock going back", slots: 16, pushes: []push{{5, 1000}}, looks: []look{{5, 1000, true}, {5, 500, false}, {5, 1100, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(tc.slots)
			for _, p := range tc.pushes {
				s.Push(p.seq, entry(p.seq), at(p.ms))
			}
			for i, l := range tc.looks {
				e, ok := s.Lookup(l.seq, at(l.ms))
				if ok != l.want {
					t.Fatalf("look %d: Lookup(%d) at %d ms: ok=%v, want %v", i, l.seq, l.ms, ok, l.want)
				}
				if ok && e != entry(l.seq) {
					t.Fatalf("look %d: Lookup(%d) = %+v, want %+v", i, l.seq, e, entry(l.seq))
				}
				if !ok && e != (Entry{}) {
					t.Fatalf("look %d: refused Lookup returned %+v", i, e)
				}
			}
		})
	}
}

func TestOptions(t *testing.T) {
	s := NewWithOptions(16, Options{MinInterval: 10 * time.Millisecond, MaxResends: 1})
	s.Push(1, entry(1), at(0))
	if _, ok := s.Lookup(1, at(1)); !ok {
		t.Fatal("first resend refused")
	}
	if _, ok := s.Lookup(1, at(1000)); ok {
		t.Fatal("resent more than MaxResends")
	}
	s = NewWithOptions(16, Options{MinInterval: 10 * time.Millisecond, MaxResends: 2})
	s.Push(1, entry(1), at(0))
	s.Lookup(1, at(0))
	if _, ok := s.Lookup(1, at(9)); ok {
		t.Fatal("resent again before MinInterval")
	}
	if _, ok := s.Lookup(1, at(10)); !ok {
		t.Fatal("refused after MinInterval")
	}
}

func TestReset(t *testing.T) {
	s := New(16)
	s.Push(1, entry(1), at(0))
	s.Reset()
	if _, ok := s.Lookup(1, at(1000)); ok {
		t.Fatal("Lookup found an entry after Reset")
	}
}

// TestConcurrent pushes and looks up from two goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	s := New(256)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 20000 {
			if e, ok := s.Lookup(uint16(i), at(i+1000)); ok && e != entry(uint16(i)) {
				t.Errorf("Lookup(%d) = %+v", i, e)
				return
			}
		}
	}()
	for i := range 20000 {
		s.Push(uint16(i), entry(uint16(i)), at(i))
	}
	wg.Wait()
}

func TestAllocs(t *testing.T) {
	s := New(512)
	var seq uint16
	now := t0
	if a := testing.AllocsPerRun(1000, func() {
		seq++
		now = now.Add(time.Millisecond)
		s.Push(seq, entry(seq), now)
		s.Lookup(seq-200, now)
	}); a != 0 {
		t.Fatalf("Push+Lookup: %v allocs per run, want 0", a)
	}
}

func BenchmarkPush(b *testing.B) {
	s := New(512)
	e := entry(1)
	b.ReportAllocs()
	var seq uint16
	for b.Loop() {
		seq++
		s.Push(seq, e, t0)
	}
}

func BenchmarkLookup(b *testing.B) {
	s := New(512)
	for i := range 512 {
		s.Push(uint16(i), entry(uint16(i)), t0)
	}
	b.ReportAllocs()
	var seq uint16
	now := t0
	for b.Loop() {
		seq++
		now = now.Add(time.Millisecond)
		s.Lookup(seq&511, now)
	}
}

// A video down track holds hundreds of slots; their size is a good part
// of what a subscriber costs in memory.
func TestSlotSize(t *testing.T) {
	if n := unsafe.Sizeof(slot{}); n != 24 {
		t.Fatalf("a slot is %d bytes, want 24", n)
	}
}
