package bench

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"time"
)

// Histogram counts durations in log-linear buckets of microseconds: exact
// below 128 µs, and within 1/128 (0.8 %) of the value above. Adding is a
// few instructions and never allocates, so a receive loop can keep one.
// The zero value is empty and ready.
type Histogram struct {
	counts [histBuckets]uint32
	n      uint64
}

const (
	histSub = 128 // buckets per power of two
	// Up to 2^27 µs (134 s); longer delays land in the last bucket.
	histBuckets = histSub + 20*histSub
)

func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - 8 // us>>e is in [128, 256)
	i := histSub + e*histSub + int(us>>e) - histSub
	return min(i, histBuckets-1)
}

// histLow is the smallest value in bucket i, in µs.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := (i - histSub) / histSub
	m := uint64(i-histSub-e*histSub) + histSub
	return m << e
}

// histMid is the middle of bucket i, in µs.
func histMid(i int) float64 {
	lo := histLow(i)
	if i < histSub {
		return float64(lo)
	}
	hi := histLow(i + 1)
	return (float64(lo) + float64(hi)) / 2
}

// Add counts d; negative durations count as 0.
func (h *Histogram) Add(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.counts[histIndex(us)]++
	h.n++
}

// Count is the number of durations added.
func (h *Histogram) Count() uint64 { return h.n }

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// Quantile returns the duration below which a fraction q of the added
// durations lie (the middle of its bucket), or 0 when h is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return time.Duration(histMid(i) * float64(time.Microsecond))
		}
	}
	return time.Duration(histMid(histBuckets-1) * float64(time.Microsecond))
}

// Spread is a figure over repeated runs: the median and the range.
type Spread struct {
	Median Figure `json:"median"`
	Min    Figure `json:"min"`
	Max    Figure `json:"max"`
	// N is how many runs had the figure.
	N int `json:"n"`
}

// SpreadOf summarises values, skipping missing ones (a figure a run could not
// measure). The median of an even count is the mean of the middle two.
func SpreadOf(values []Figure) Spread {
	v := make([]Figure, 0, len(values))
	for _, x := range values {
		if x.Valid() {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{Median: Missing, Min: Missing, Max: Missing}
	}
	slices.Sort(v)
	s := Spread{Min: v[0], Max: v[len(v)-1], N: len(v)}
	if m := len(v) / 2; len(v)%2 == 1 {
		s.Median = v[m]
	} else {
		s.Median = (v[m-1] + v[m]) / 2
	}
	return s
}

// medianDuration returns the median of ds, or 0 for none.
func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if m := len(s) / 2; len(s)%2 == 1 {
		return s[m]
	} else {
		return (s[m-1] + s[m]) / 2
	}
}

// Figure is a measured number that may be missing (NaN), such as server
// CPU when the server's process is unknown. JSON writes a missing figure
// as null.
type Figure float64

// Missing is the figure a run could not measure.
var Missing = Figure(math.NaN())

// Valid reports whether f was measured.
func (f Figure) Valid() bool { return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) }

// MarshalJSON writes f, or null when it is missing.
func (f Figure) MarshalJSON() ([]byte, error) {
	if !f.Valid() {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(f), 'g', 6, 64), nil
}

// UnmarshalJSON reads a number, or null as missing.
func (f *Figure) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Missing
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("bench: figure %q: %w", b, err)
	}
	*f = Figure(v)
	return nil
}
