package speaker

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	tick   = 100 * time.Millisecond
	packet = 20 * time.Millisecond // one Opus frame
)

// A source is what a publisher's microphone sends: the level (-dBov) of the
// packet sent at elapsed time since the start, or -1 for no packet.
type source func(elapsed time.Duration) int

func constant(level int) source { return func(time.Duration) int { return level } }

// muted sends nothing, as a muted track does.
var muted = constant(-1)

// beep is Chrome's fake microphone: a 20 ms beep every 500 ms, silence in
// between. The beep is a square wave between 0 and full scale, so about -6
// dBov once the DC is filtered out.
func beep(elapsed time.Duration) int {
	if elapsed%(500*time.Millisecond) < packet {
		return 6
	}
	return 127
}

// alternate plays a for period, then b for period, and so on.
func alternate(period time.Duration, a, b int) source {
	return func(elapsed time.Duration) int {
		if elapsed/period%2 == 0 {
			return a
		}
		return b
	}
}

// sim drives a Detector the way the core's tick does: between ticks every
// track's Meter observes its source's packets; at each tick every Meter is
// taken, fed to Update with the same now, and Speakers is called.
type sim struct {
	d       *Detector[string]
	now     time.Time
	keys    []string
	src     map[string]source
	meters  map[string]*Meter
	changes int // ticks at which Speakers reported a change
}

func newSim(o Options, src map[string]source) *sim {
	s := &sim{d: NewDetector[string](o), now: t0, src: src, meters: map[string]*Meter{}}
	for k := range src {
		s.keys = append(s.keys, k)
		s.meters[k] = new(Meter)
	}
	slices.Sort(s.keys)
	return s
}

// step runs one tick.
func (s *sim) step() ([]Ranked[string], bool) {
	for at := s.now; at.Before(s.now.Add(tick)); at = at.Add(packet) {
		for _, k := range s.keys {
			if l := s.src[k](at.Sub(t0)); l >= 0 {
				s.meters[k].Observe(uint8(l))
			}
		}
	}
	s.now = s.now.Add(tick)
	for _, k := range s.keys {
		s.d.Update(k, s.meters[k].Take(), s.now)
	}
	list, changed := s.d.Speakers(s.now)
	if changed {
		s.changes++
	}
	return list, changed
}

// run runs ticks for d and returns the last list.
func (s *sim) run(d time.Duration) []Ranked[string] {
	var list []Ranked[string]
	for end := s.now.Add(d); s.now.Before(end); {
		list, _ = s.step()
	}
	return list
}

func keys(list []Ranked[string]) []string {
	var ks []string
	for _, r := range list {
		ks = append(ks, r.Key)
	}
	return ks
}

func dBov(level float64) float64 { return 20 * math.Log10(level) }

func TestDetectorRanks(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  map[string]source
		want []string
	}{
		{"nobody", map[string]source{"a": muted, "b": constant(127)}, nil},
		{"one speaker", map[string]source{"a": constant(30), "b": muted}, []string{"a"}},
		{"two speakers", map[string]source{"a": constant(20), "b": constant(30)}, []string{"a", "b"}},
		{"two speakers, the other way", map[string]source{"a": constant(30), "b": constant(20)}, []string{"b", "a"}},
		{"three speakers", map[string]source{"a": constant(35), "b": constant(20), "c": constant(27)}, []string{"b", "c", "a"}},
		// A real microphone's silence after noise suppression is not speech.
		{"room noise", map[string]source{"a": constant(25), "b": constant(70), "c": constant(127)}, []string{"a"}},
		{"chrome's fake microphone", map[string]source{"fake": beep, "real": constant(80)}, []string{"fake"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(Options{}, tc.src)
			list := s.run(3 * time.Second)
			if got := keys(list); !slices.Equal(got, tc.want) {
				t.Errorf("speakers %v, want %v (%+v)", got, tc.want, list)
			}
			for i, r := range list {
				if r.Level <= 0 || r.Level > 1 {
					t.Errorf("level %v out of 0..1", r.Level)
				}
				if i > 0 && r.Level > list[i-1].Level {
					t.Errorf("not loudest first: %+v", list)
				}
			}
		})
	}
}

// TestDetectorLevel checks the smoothed level of a steady voice settles on
// its amplitude.
func TestDetectorLevel(t *testing.T) {
	s := newSim(Options{}, map[string]source{"a": constant(30)})
	list := s.run(5 * time.Second)
	if len(list) != 1 || math.Abs(dBov(list[0].Level)+30) > 0.1 {
		t.Errorf("speakers %+v, want a at -30 dBov", list)
	}
}

// TestDetectorFakeMicrophone backs DefaultThreshold's claim: Chrome's beep,
// once smoothed, stays between -40 and -30 dBov, so a browser test's
// publisher is listed without a break.
func TestDetectorFakeMicrophone(t *testing.T) {
	s := newSim(Options{}, map[string]source{"fake": beep})
	s.run(time.Second)
	low, high := 1.0, 0.0
	for range 100 {
		list, _ := s.step()
		if len(list) != 1 {
			t.Fatalf("at %v: speakers %+v, want the fake microphone", s.now.Sub(t0), list)
		}
		low, high = min(low, list[0].Level), max(high, list[0].Level)
	}
	t.Logf("smoothed beep from %.1f to %.1f dBov", dBov(low), dBov(high))
	if dBov(low) < -40 || dBov(high) > -30 {
		t.Errorf("smoothed beep from %.1f to %.1f dBov, want within -40..-30", dBov(low), dBov(high))
	}
	if s.changes != 1 {
		t.Errorf("%d changes, want 1 (joined)", s.changes)
	}
}

// TestDetectorHold: a speaker who stops stays listed for Hold after its
// level was last above the threshold, then leaves.
func TestDetectorHold(t *testing.T) {
	for _, hold := range []time.Duration{0, 300 * time.Millisecond, 2 * time.Second, -1} {
		t.Run(fmt.Sprint(hold), func(t *testing.T) {
			talking := true
			s := newSim(Options{Hold: hold}, map[string]source{
				"a": func(time.Duration) int {
					if talking {
						return 30
					}
					return -1
				},
			})
			if list := s.run(2 * time.Second); len(list) != 1 {
				t.Fatalf("speakers %+v, want a", list)
			}
			talking = false
			stopped := s.now
			hold := s.d.Options().Hold
			for {
				list, _ := s.step()
				above := s.d.tracks["a"].above
				if len(list) == 0 {
					if s.now.Sub(above) < hold {
						t.Errorf("left %v after last above threshold, before Hold %v", s.now.Sub(above), hold)
					}
					if s.now.Sub(above) > max(hold, 0)+tick {
						t.Errorf("left %v after last above threshold, a tick past Hold %v", s.now.Sub(above), hold)
					}
					// A -30 dBov voice decays to -50 in Window·ln(10).
					decay := time.Duration(math.Round(float64(DefaultWindow) * math.Ln10))
					if d := s.now.Sub(stopped) - decay - max(hold, 0); d < -tick || d > tick {
						t.Errorf("left %v after stopping, want about %v", s.now.Sub(stopped), decay+max(hold, 0))
					}
					break
				}
				if s.now.Sub(stopped) > 10*time.Second {
					t.Fatalf("still listed 10 s after stopping: %+v", list)
				}
			}
			if s.changes != 2 {
				t.Errorf("%d changes, want 2 (joined, left)", s.changes)
			}
		})
	}
}

// TestDetectorFlicker: levels that cross the threshold or each other all
// the time do not make the list change all the time.
func TestDetectorFlicker(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       Options
		src     map[string]source
		changes int // over 10 s; at most when a range
		atLeast bool
	}{
		// A quiet voice whose level falls below the threshold at every
		// pause between phrases.
		{"quiet speaker", Options{}, map[string]source{"a": alternate(600*time.Millisecond, 42, -1)}, 1, false},
		{"quiet speaker without hold", Options{Hold: -1}, map[string]source{"a": alternate(600*time.Millisecond, 42, -1)}, 10, true},
		// Two people talking at once, each a little louder in turn.
		{"two close voices", Options{}, map[string]source{
			"a": alternate(500*time.Millisecond, 28, 31),
			"b": alternate(500*time.Millisecond, 31, 28),
		}, 1, false},
		{"two close voices, strict order", Options{Overtake: 1}, map[string]source{
			"a": alternate(500*time.Millisecond, 28, 31),
			"b": alternate(500*time.Millisecond, 31, 28),
		}, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(tc.o, tc.src)
			s.run(10 * time.Second)
			if tc.atLeast && s.changes < tc.changes || !tc.atLeast && s.changes != tc.changes {
				t.Errorf("%d changes", s.changes)
			}
		})
	}
}

// TestDetectorOvertake: a speaker who becomes clearly louder takes the
// first place quickly.
func TestDetectorOvertake(t *testing.T) {
	bLevel := 30
	s := newSim(Options{}, map[string]source{
		"a": constant(30),
		"b": func(time.Duration) int { return bLevel },
	})
	if got := keys(s.run(2 * time.Second)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("speakers %v, want a, b (tie: first seen first)", got)
	}
	bLevel = 20
	start := s.now
	for {
		list, changed := s.step()
		if slices.Equal(keys(list), []string{"b", "a"}) {
			if !changed {
				t.Error("reordered without reporting a change")
			}
			if d := s.now.Sub(start); d > 500*time.Millisecond {
				t.Errorf("b took the lead after %v", d)
			}
			break
		}
		if changed || s.now.Sub(start) > 2*time.Second {
			t.Fatalf("speakers %+v", list)
		}
	}
}

// TestDetectorChanged: level changes alone are not changes.
func TestDetectorChanged(t *testing.T) {
	s := newSim(Options{}, map[string]source{"a": alternate(300*time.Millisecond, 20, 35), "b": constant(45)})
	if got := keys(s.run(2 * time.Second)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("speakers %v", got)
	}
	s.changes = 0
	s.run(5 * time.Second)
	if s.changes != 0 {
		t.Errorf("%d changes while a's level swings by 15 dB", s.changes)
	}
	if list, changed := s.d.Speakers(s.now); changed || len(list) != 2 {
		t.Errorf("Speakers again = %+v, %v", list, changed)
	}
}

func TestDetectorRemove(t *testing.T) {
	s := newSim(Options{}, map[string]source{"a": constant(20), "b": constant(30)})
	if got := keys(s.run(time.Second)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("speakers %v", got)
	}
	s.d.Remove("a")
	s.d.Remove("unknown")
	list, changed := s.d.Speakers(s.now)
	if !changed || !slices.Equal(keys(list), []string{"b"}) {
		t.Errorf("after Remove: %+v, %v; want b, changed", list, changed)
	}
	if _, changed := s.d.Speakers(s.now); changed {
		t.Error("changed again")
	}
	if _, ok := s.d.Level("a", s.now); ok {
		t.Error("a still known")
	}
	// Removing the only speaker empties the list.
	s.d.Remove("b")
	if list, changed := s.d.Speakers(s.now); !changed || list != nil {
		t.Errorf("after removing all: %+v, %v", list, changed)
	}
}

// TestDetectorNoUpdate: a track the tick stops updating decays as if
// silent and leaves.
func TestDetectorNoUpdate(t *testing.T) {
	d := NewDetector[int](Options{})
	now := t0
	for range 20 {
		now = now.Add(tick)
		d.Update(1, Sample{Packets: 5, Level: 0.1}, now)
	}
	if list, _ := d.Speakers(now); len(list) != 1 {
		t.Fatalf("speakers %+v", list)
	}
	l0, _ := d.Level(1, now)
	l1, _ := d.Level(1, now.Add(DefaultWindow))
	if math.Abs(l1/l0-math.Exp(-1)) > 1e-9 {
		t.Errorf("decayed from %v to %v in one Window, want a factor 1/e", l0, l1)
	}
	later := now.Add(time.Duration(float64(DefaultWindow)*math.Log(l0/DefaultThreshold)) + DefaultHold + time.Millisecond)
	if list, changed := d.Speakers(later); len(list) != 0 || !changed {
		t.Errorf("at %v: %+v, %v; want empty, changed", later.Sub(now), list, changed)
	}
}

// TestDetectorElapsedTime: smoothing follows real time, whatever the tick.
func TestDetectorElapsedTime(t *testing.T) {
	want := 0.1 * (1 - math.Exp(-float64(time.Second)/float64(DefaultWindow)))
	for _, steps := range [][]time.Duration{
		{50 * time.Millisecond},
		{200 * time.Millisecond},
		{50 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond},
	} {
		t.Run(fmt.Sprint(steps), func(t *testing.T) {
			d := NewDetector[string](Options{})
			d.Update("clock", Sample{}, t0) // the tick existed before a
			now := t0
			for i := 0; now.Before(t0.Add(time.Second)); i++ {
				now = now.Add(steps[i%len(steps)])
				d.Update("a", Sample{Packets: 1, Level: 0.1}, now)
			}
			if !now.Equal(t0.Add(time.Second)) {
				t.Fatalf("steps do not add up to 1 s")
			}
			if got, _ := d.Level("a", now); math.Abs(got-want) > 1e-12 {
				t.Errorf("level %v, want %v", got, want)
			}
		})
	}
}

func TestDetectorSample(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Sample
		want float64 // level after one Window from 0
	}{
		{"no packets is silence", Sample{Packets: 0, Level: 0.5}, 0},
		{"NaN is silence", Sample{Packets: 1, Level: math.NaN()}, 0},
		{"negative is silence", Sample{Packets: 1, Level: -1}, 0},
		{"above full scale is full scale", Sample{Packets: 1, Level: 7}, 1 - math.Exp(-1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDetector[string](Options{})
			d.Update("clock", Sample{}, t0)
			d.Update("clock", Sample{}, t0.Add(DefaultWindow))
			d.Update("a", tc.s, t0.Add(2*DefaultWindow))
			if got, _ := d.Level("a", t0.Add(2*DefaultWindow)); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("level %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	for _, tc := range []struct{ in, want Options }{
		{Options{}, Options{DefaultWindow, DefaultThreshold, DefaultHold, DefaultOvertake}},
		{Options{-1, -1, -1, 0.5}, Options{DefaultWindow, DefaultThreshold, -1, 1}},
		{Options{time.Second, 0.01, 2 * time.Second, 2}, Options{time.Second, 0.01, 2 * time.Second, 2}},
	} {
		if got := NewDetector[string](tc.in).Options(); got != tc.want {
			t.Errorf("NewDetector(%+v).Options() = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	if math.Abs(DefaultThreshold-Linear(50)) > 1e-15 {
		t.Errorf("DefaultThreshold %v is not -50 dBov", DefaultThreshold)
	}
}

// BenchmarkDetectorTick is one tick of a 50-track conference with 5
// speakers: every Meter taken and fed to Update, then Speakers.
func BenchmarkDetectorTick(b *testing.B) {
	const tracks = 50
	d := NewDetector[int](Options{})
	meters := make([]Meter, tracks)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(tick)
		for i := range meters {
			level := uint8(127)
			if i < 5 {
				level = uint8(20 + i*3)
			}
			for range 5 {
				meters[i].Observe(level)
			}
			d.Update(i, meters[i].Take(), now)
		}
		d.Speakers(now)
	}
}
