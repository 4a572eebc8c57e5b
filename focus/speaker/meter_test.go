package speaker

import (
	"math"
	"sync"
	"testing"
)

func TestMeter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		levels  []uint8
		packets int
		level   float64
	}{
		{"nothing", nil, 0, 0},
		{"full scale", []uint8{0}, 1, 1},
		{"-20 dBov", []uint8{20, 20, 20}, 3, 0.1},
		{"silence", []uint8{127, 127}, 2, 0},
		// The mean of amplitudes, not of dBov: half loud, half silent is
		// half the amplitude (-6 dBov), not -63.5 dBov.
		{"loud and silent", []uint8{0, 127, 0, 127}, 4, 0.5},
		{"beyond 127 is silence", []uint8{200, 255}, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Meter
			for _, l := range tc.levels {
				m.Observe(l)
			}
			s := m.Take()
			if s.Packets != tc.packets || math.Abs(s.Level-tc.level) > 1e-4 {
				t.Errorf("Take() = %+v, want %d packets at %v", s, tc.packets, tc.level)
			}
			if s := m.Take(); s != (Sample{}) {
				t.Errorf("second Take() = %+v, want zero", s)
			}
		})
	}
}

// TestMeterFull checks the largest count the packed word holds.
func TestMeterFull(t *testing.T) {
	var m Meter
	const n = 1<<(64-sumBits) - 1
	m.acc.Store(n * (countOne | amplitude(0)))
	if s := m.Take(); s.Packets != n || s.Level != 1 {
		t.Errorf("Take() = %+v, want %d packets at full scale", s, n)
	}
}

// TestMeterConcurrent runs Observe from several goroutines (a track has one
// read loop, but nothing should break with more) against Take from a tick:
// no packet may be lost or counted twice, and no sample may exceed 1.
func TestMeterConcurrent(t *testing.T) {
	const writers, perWriter = 4, 20000
	var m Meter
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for i := range perWriter {
				m.Observe(uint8(i % 2 * 20)) // 0 and -20 dBov
			}
		})
	}
	done := make(chan struct{})
	var packets int
	var sum float64
	go func() {
		defer close(done)
		for packets < writers*perWriter {
			s := m.Take()
			if s.Level < 0 || s.Level > 1 {
				t.Errorf("sample %+v out of range", s)
			}
			packets += s.Packets
			sum += s.Level * float64(s.Packets)
		}
	}()
	wg.Wait()
	<-done
	if s := m.Take(); s.Packets != 0 {
		t.Errorf("left over after all packets were taken: %+v", s)
	}
	if packets != writers*perWriter {
		t.Errorf("took %d packets, want %d", packets, writers*perWriter)
	}
	// Exact in fixed point, so the float sums may differ only by rounding.
	want := writers * perWriter / 2 * float64(amplitude(0)+amplitude(20)) / ampScale
	if math.Abs(sum-want) > 1e-6 {
		t.Errorf("sum of amplitudes %v, want %v", sum, want)
	}
}

func TestMeterObserveAllocs(t *testing.T) {
	var m Meter
	if n := testing.AllocsPerRun(1000, func() { m.Observe(30) }); n != 0 {
		t.Errorf("Observe allocates %v times per packet", n)
	}
}

func BenchmarkMeterObserve(b *testing.B) {
	var m Meter
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Observe(uint8(i) & 0x7f)
	}
}

// BenchmarkMeterObserveParallel is the contended case: every goroutine on
// one Meter, far worse than the one read loop per track of real use.
func BenchmarkMeterObserveParallel(b *testing.B) {
	var m Meter
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(30)
		}
	})
}
