package bwe

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// path simulates a link for an Estimator: packets sent at the rate the
// estimate allows (up to offered) cross a FIFO bottleneck of capacity
// bits per second after prop delay; a queue deeper than maxQueue drops
// them, and loss drops them at random. The receiver reports what arrived
// every 50 ms with pion's feedback recorder, as a browser would.
type path struct {
	t        *testing.T
	e        *Estimator
	capacity float64 // bits per second
	offered  float64 // what the sender would send, bits per second
	prop     time.Duration
	maxQueue time.Duration
	loss     float64
	rng      *rand.Rand

	now      time.Duration
	seq      uint16
	credit   float64       // bits the sender may still send
	linkFree time.Duration // when the bottleneck is next idle
	inFlight []flight
	rec      *twcc.Recorder

	maxDelay time.Duration // the largest queueing delay seen after warm-up
	warm     time.Duration
}

type flight struct {
	seq     uint16
	arrival time.Duration
	lost    bool
}

const packetBytes = 1200

func newPath(t *testing.T, capacity, offered float64) *path {
	return &path{
		t: t, e: New(Config{Initial: 1_000_000, Min: 50_000, Max: 50_000_000}),
		capacity: capacity, offered: offered,
		prop: 20 * time.Millisecond, maxQueue: 300 * time.Millisecond,
		rng: rand.New(rand.NewPCG(1, 2)), rec: twcc.NewRecorder(1), warm: 10 * time.Second,
	}
}

// run advances the simulation by d in steps of 1 ms.
func (p *path) run(d time.Duration) {
	const step = time.Millisecond
	for end := p.now + d; p.now < end; p.now += step {
		rate := min(float64(p.e.Target()), p.offered)
		p.credit = min(p.credit+rate*step.Seconds(), 4*packetBytes*8)
		for p.credit >= packetBytes*8 {
			p.credit -= packetBytes * 8
			p.send()
		}
		// Arrivals up to now reach the recorder in order.
		n := 0
		for _, f := range p.inFlight {
			if f.arrival > p.now {
				break
			}
			if !f.lost {
				p.rec.Record(1, f.seq, int64(f.arrival/time.Microsecond))
			}
			n++
		}
		p.inFlight = p.inFlight[n:]
		if p.now%(50*time.Millisecond) == 0 {
			p.feedback()
		}
	}
}

func (p *path) send() {
	p.seq++
	p.e.Sent(p.seq, packetBytes, p.now)
	start := max(p.now, p.linkFree)
	queue := start - p.now
	f := flight{seq: p.seq}
	if queue > p.maxQueue || p.rng.Float64() < p.loss {
		f.lost, f.arrival = true, p.now
	} else {
		p.linkFree = start + time.Duration(packetBytes*8/p.capacity*float64(time.Second))
		f.arrival = p.linkFree + p.prop
		if p.now > p.warm {
			p.maxDelay = max(p.maxDelay, queue)
		}
	}
	p.inFlight = append(p.inFlight, f)
}

func (p *path) feedback() {
	for _, pkt := range p.rec.BuildFeedbackPacket() {
		b, err := pkt.Marshal()
		if err != nil {
			p.t.Fatal(err)
		}
		if err := p.e.HandleTWCC(b, p.now); err != nil {
			p.t.Fatalf("HandleTWCC: %v", err)
		}
	}
}

func TestEstimatorFindsTheBottleneck(t *testing.T) {
	for _, capacity := range []float64{500e3, 2e6, 8e6} {
		p := newPath(t, capacity, 20e6)
		p.run(30 * time.Second)
		// Averaged over the last 10 s, as AIMD saws around capacity.
		var sum float64
		n := 0
		for range 100 {
			p.run(100 * time.Millisecond)
			sum += float64(p.e.Target())
			n++
		}
		avg := sum / float64(n)
		t.Logf("capacity %.1f Mbit/s: estimate %.2f Mbit/s, max queue %v", capacity/1e6, avg/1e6, p.maxDelay)
		if avg < 0.6*capacity || avg > 1.15*capacity {
			t.Errorf("capacity %.1f Mbit/s: mean estimate %.2f Mbit/s, want within 60–115 %%", capacity/1e6, avg/1e6)
		}
		if p.maxDelay > 250*time.Millisecond {
			t.Errorf("capacity %.1f Mbit/s: the queue reached %v", capacity/1e6, p.maxDelay)
		}
	}
}

func TestEstimatorGrowsOnAFreePath(t *testing.T) {
	// 4 Mbit/s offered on a 100 Mbit/s link: the estimate grows until
	// it covers what is sent, and stays bounded by what was
	// acknowledged (it cannot know the link is wider).
	p := newPath(t, 100e6, 4e6)
	p.run(20 * time.Second)
	got := float64(p.e.Target())
	if got < 4e6 || got > 1.5*4e6+ackedSlack+1 {
		t.Fatalf("estimate %.2f Mbit/s, want 4–6 Mbit/s", got/1e6)
	}
	if loss, over := p.e.Congested(p.now); loss != 0 || over {
		t.Fatalf("free path reads as congested: loss %v, overusing %v", loss, over)
	}
}

func TestEstimatorBacksOffUnderLoss(t *testing.T) {
	p := newPath(t, 100e6, 4e6)
	p.run(20 * time.Second)
	before := p.e.Target()
	p.loss = 0.25
	p.run(5 * time.Second)
	after := p.e.Target()
	loss, _ := p.e.Congested(p.now)
	if float64(after) > 0.6*float64(before) {
		t.Fatalf("25 %% loss for 5 s: estimate %d → %d, want it below 60 %%", before, after)
	}
	if loss < 0.15 || loss > 0.35 {
		t.Fatalf("reported loss %.3f, want about 0.25", loss)
	}
	// 1 % loss is noise: the estimate recovers.
	p.loss = 0.01
	p.run(30 * time.Second)
	if got := p.e.Target(); got < 4e6 {
		t.Fatalf("after the loss cleared: estimate %d, want back to 4 Mbit/s", got)
	}
}

func TestEstimatorReportsOveruse(t *testing.T) {
	// A sudden drop of capacity below what is sent builds a queue: the
	// detector must call overuse and the estimate must fall below the
	// new capacity quickly.
	p := newPath(t, 10e6, 3e6)
	p.run(10 * time.Second)
	p.capacity = 1e6
	sawOveruse := false
	for range 40 {
		p.run(50 * time.Millisecond)
		if _, over := p.e.Congested(p.now); over {
			sawOveruse = true
		}
	}
	if !sawOveruse {
		t.Fatal("capacity fell to a third of the rate and no overuse was reported")
	}
	if got := p.e.Target(); got > 1.1e6 {
		t.Fatalf("2 s after capacity fell to 1 Mbit/s the estimate is %d", got)
	}
}

func TestEstimatorCountsUnknownPackets(t *testing.T) {
	e := New(Config{Initial: 1e6})
	rec := twcc.NewRecorder(1)
	for i := range uint16(10) {
		rec.Record(1, 100+i, int64(i)*1000)
	}
	for _, pkt := range rec.BuildFeedbackPacket() {
		b, _ := pkt.Marshal()
		if err := e.HandleTWCC(b, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.Unknown(); got != 10 {
		t.Fatalf("Unknown %d, want 10", got)
	}
	if got := e.Target(); got != 1e6 {
		t.Fatalf("feedback about nothing sent moved the estimate to %d", got)
	}
}

func TestEstimatorRefusesMalformedFeedback(t *testing.T) {
	e := New(Config{Initial: 1e6})
	nack, _ := (&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 1}}}).Marshal()
	for name, b := range map[string][]byte{
		"empty": nil, "short": {0x8f, 205, 0, 1}, "a NACK": nack,
	} {
		if err := e.HandleTWCC(b, time.Second); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestEstimatorReferenceTimeWraps(t *testing.T) {
	e := New(Config{Initial: 1e6})
	const span = 1 << 24
	if got := e.unwrapRef(span - 1); got != 0 {
		t.Fatalf("first: %d", got)
	}
	if got := e.unwrapRef(2); got != span*64_000 {
		t.Fatalf("after the wrap: %d", got)
	}
	if got := e.unwrapRef(span - 2); got != 0 {
		t.Fatalf("a late one from before the wrap: %d", got)
	}
	if got := e.unwrapRef(3); got != span*64_000 {
		t.Fatalf("after it: %d", got)
	}
}

func TestEstimatorAllocatesNothing(t *testing.T) {
	e := New(Config{Initial: 1e6})
	rec := twcc.NewRecorder(1)
	var seq uint16
	now := time.Duration(0)
	var fb []byte
	for i := range 40 {
		seq++
		e.Sent(seq, 1200, now)
		rec.Record(1, seq, int64(now/time.Microsecond)+20_000+int64(i)*37)
		now += 2 * time.Millisecond
	}
	pkts := rec.BuildFeedbackPacket()
	fb, _ = pkts[0].Marshal()
	if n := testing.AllocsPerRun(1000, func() {
		seq++
		e.Sent(seq, 1200, now)
	}); n != 0 {
		t.Fatalf("Sent: %v allocations", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if err := e.HandleTWCC(fb, now); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("HandleTWCC: %v allocations", n)
	}
}

func BenchmarkSent(b *testing.B) {
	e := New(Config{Initial: 1e6})
	b.ReportAllocs()
	for i := range b.N {
		e.Sent(uint16(i), 1200, time.Duration(i))
	}
}

func TestSentAtUnwraps(t *testing.T) {
	for _, tc := range []struct {
		name string
		sent int64 // ns
		now  int64 // ns
	}{
		{"same µs", 5_000_000, 5_000_400},
		{"a second later", 5_000_000, 1_005_000_000},
		{"across 2^32 µs", (1<<32 - 3_000) * 1e3, (1<<32 + 2_000_000) * 1e3},
		{"an hour in, two seconds later", 3600e9, 3602e9},
	} {
		at := uint32(tc.sent / 1e3)
		if got := sentAt(at, tc.now); got != tc.sent/1e3*1e3 {
			t.Errorf("%s: sentAt %d, want %d", tc.name, got, tc.sent/1e3*1e3)
		}
	}
}

// TestEstimatorCountsEachPacketOnce: feedback repeated, or a packet
// reported lost and then received, is counted once, as it finally was.
func TestEstimatorCountsEachPacketOnce(t *testing.T) {
	e := New(Config{Initial: 1e6})
	for seq := range uint16(10) {
		e.Sent(seq+1, 1000, time.Duration(seq)*time.Millisecond)
	}
	feedback := func(seqs ...uint16) {
		rec := twcc.NewRecorder(1)
		for _, s := range seqs {
			rec.Record(1, s, int64(s)*1000+20_000)
		}
		for _, p := range rec.BuildFeedbackPacket() {
			b, _ := p.Marshal()
			if err := e.HandleTWCC(b, 50*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
	}
	feedback(1, 2, 4, 5) // 3 lost
	feedback(1, 2, 4, 5) // the same again
	if e.reported != 5 || e.lost != 1 {
		t.Fatalf("after a repeated feedback: %d reported, %d lost; want 5 and 1", e.reported, e.lost)
	}
	feedback(3, 6) // 3 was late, not lost
	if e.reported != 6 || e.lost != 0 {
		t.Fatalf("after the late packet: %d reported, %d lost; want 6 and 0", e.reported, e.lost)
	}
	var bytes int
	for _, b := range e.binBytes {
		bytes += b
	}
	if bytes != 6*1000 {
		t.Fatalf("acknowledged %d bytes, want 6000 (each received packet once)", bytes)
	}
}
