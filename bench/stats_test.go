package bench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value lands in the bucket whose range holds it, and buckets
	// are in order: low(i) <= v < low(i+1).
	prev := -1
	for _, us := range []uint64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 4095, 4096, 1 << 20, 1<<26 + 12345} {
		i := histIndex(us)
		if lo, hi := histLow(i), histLow(i+1); us < lo || us >= hi {
			t.Errorf("%d µs in bucket %d [%d, %d)", us, i, lo, hi)
		}
		if i < prev {
			t.Errorf("%d µs in bucket %d, below the previous value's %d", us, i, prev)
		}
		prev = i
		// Relative error of the bucket's middle under 1 %.
		if us >= histSub {
			if e := math.Abs(histMid(i)-float64(us)) / float64(us); e > 0.01 {
				t.Errorf("%d µs: bucket middle %.1f is %.2f%% off", us, histMid(i), 100*e)
			}
		}
	}
	if i := histIndex(1 << 40); i != histBuckets-1 {
		t.Errorf("a huge value lands in bucket %d, want the last, %d", i, histBuckets-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Error("empty histogram's median is not 0")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var exact []time.Duration
	for range 100000 {
		// Mostly around 1 ms, with a tail to 50 ms.
		d := time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
		if rng.IntN(100) == 0 {
			d += time.Duration(rng.IntN(50)) * time.Millisecond
		}
		exact = append(exact, d)
		h.Add(d)
	}
	h.Add(-time.Second) // a clock step: counted as 0
	exact = append(exact, 0)
	slices.Sort(exact)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		want := exact[int(math.Ceil(q*float64(len(exact))))-1]
		got := h.Quantile(q)
		// Within a bucket: 1 µs, or 1 % above 128 µs.
		tol := max(time.Microsecond, want/100)
		if d := got - want; d < -tol || d > tol {
			t.Errorf("q%.3f = %v, exact %v", q, got, want)
		}
	}
	if h.Count() != uint64(len(exact)) {
		t.Errorf("Count = %d, want %d", h.Count(), len(exact))
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for i := range 1000 {
		d := time.Duration(i) * 10 * time.Microsecond
		all.Add(d)
		if i%3 == 0 {
			a.Add(d)
		} else {
			b.Add(d)
		}
	}
	a.Merge(&b)
	if a != all {
		t.Error("merging two halves differs from adding everything to one")
	}
}

func TestHistogramAddAllocations(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Add(1234 * time.Microsecond) }); n != 0 {
		t.Errorf("Add allocates %v times", n)
	}
}

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Figure
		want Spread
	}{
		{"odd", []Figure{3, 1, 2}, Spread{Median: 2, Min: 1, Max: 3, N: 3}},
		{"even", []Figure{4, 1, 3, 2}, Spread{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{"one", []Figure{7}, Spread{Median: 7, Min: 7, Max: 7, N: 1}},
		{"missing skipped", []Figure{Missing, 5, Missing, 1}, Spread{Median: 3, Min: 1, Max: 5, N: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SpreadOf(tc.in); got != tc.want {
				t.Errorf("SpreadOf(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
	if s := SpreadOf([]Figure{Missing}); s.N != 0 || s.Median.Valid() || s.Min.Valid() || s.Max.Valid() {
		t.Errorf("SpreadOf(all missing) = %+v, want nothing", s)
	}
}

func TestMedianDuration(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2}
	if got := medianDuration(ds); got != 3 {
		t.Errorf("median of %v = %v, want 3", ds, got)
	}
	if !slices.Equal(ds, []time.Duration{5, 1, 4, 2}) {
		t.Error("medianDuration sorted its argument")
	}
	if medianDuration(nil) != 0 {
		t.Error("median of nothing is not 0")
	}
}

func TestFigureJSON(t *testing.T) {
	b, err := json.Marshal(struct {
		A, B Figure
		S    Spread
	}{1.5, Missing, SpreadOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"A":1.5,"B":null,"S":{"median":null,"min":null,"max":null,"n":0}}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var back struct{ A, B Figure }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.A != 1.5 || back.B.Valid() {
		t.Errorf("read back %+v", back)
	}
	var f Figure
	if err := json.Unmarshal([]byte(`"x"`), &f); err == nil {
		t.Error("a string read as a figure")
	}
}
