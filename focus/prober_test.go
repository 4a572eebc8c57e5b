package focus

import (
	"testing"
	"time"
)

// probeRun drives a prober tick by tick on a fake clock.
type probeRun struct {
	t   *testing.T
	p   prober
	now time.Time
	pad int // padding returned since the last check
}

func newProbeRun(t *testing.T) *probeRun {
	return &probeRun{t: t, now: time.Unix(1000, 0)}
}

// run ticks every probeSlot for d with the same input.
func (r *probeRun) run(d time.Duration, in probeInput) {
	r.t.Helper()
	for end := r.now.Add(d); r.now.Before(end); r.now = r.now.Add(probeSlot) {
		r.pad += r.p.tick(r.now, in)
	}
}

func (r *probeRun) takePad() int {
	n := r.pad
	r.pad = 0
	return n
}

func TestProberStartsOnlyWhenWorthIt(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   probeInput
		want bool
	}{
		{"wants much more", probeInput{Estimate: 1e6, Wanted: 3e6, Sending: 1e6}, true},
		// Moving up needs the allocator's headroom: wanting 1 Mbit/s
		// more than it gets, an estimate of 1.09 Mbit/s raises nothing.
		{"estimate short of the headroom", probeInput{Estimate: 1.09e6, Wanted: 1e6, Sending: 5e5}, true},
		{"estimate covers the headroom", probeInput{Estimate: 1.1e6, Wanted: 1e6, Sending: 5e5}, false},
		{"gets all it wants", probeInput{Estimate: 1e6, Wanted: 1e6, Sending: 1e6}, false},
		{"wants less", probeInput{Estimate: 1e6, Wanted: 5e5, Sending: 5e5}, false},
		{"no estimate", probeInput{Estimate: 0, Wanted: 3e6}, false},
		{"overusing", probeInput{Estimate: 1e6, Wanted: 3e6, Overusing: true}, false},
		{"losing 2 %", probeInput{Estimate: 1e6, Wanted: 3e6, Loss: 0.02}, false},
		{"losing 1 %", probeInput{Estimate: 1e6, Wanted: 3e6, Loss: 0.01}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newProbeRun(t)
			r.run(probeSlot, tc.in)
			if got := r.p.probing(); got != tc.want {
				t.Fatalf("probing %v, want %v", got, tc.want)
			}
			if got := r.takePad() > 0; got != tc.want {
				t.Fatalf("padded %v, want %v", got, tc.want)
			}
		})
	}
}

func TestProberClusterPadsTheGapToTheTarget(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         probeInput
		wantTarget uint64
	}{
		// min(wanted plus the allocator's headroom, 2×estimate); the
		// media already sent counts.
		{"twice the estimate", probeInput{Estimate: 1e6, Wanted: 5e6, Sending: 1e6}, 2e6},
		{"the wanted rate and headroom", probeInput{Estimate: 1e6, Wanted: 1.5e6, Sending: 8e5}, 1.65e6},
		{"no media", probeInput{Estimate: 1e6, Wanted: 5e6}, 2e6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newProbeRun(t)
			r.run(probeCluster, tc.in)
			if r.p.target != tc.wantTarget {
				t.Fatalf("target %d, want %d", r.p.target, tc.wantTarget)
			}
			// One slot's padding at each of the cluster's ticks.
			perSlot := int((tc.wantTarget - tc.in.Sending) * uint64(probeSlot) / uint64(8*time.Second))
			if got, want := r.takePad(), perSlot*int(probeCluster/probeSlot); got != want {
				t.Fatalf("padded %d bytes in the cluster, want %d", got, want)
			}
			r.run(probeSettle+time.Second, tc.in)
			if got := r.takePad(); got != 0 {
				t.Fatalf("padded %d bytes after the cluster", got)
			}
		})
	}
}

func TestProberLateTickPadsAtMostTwoSlots(t *testing.T) {
	var p prober
	now := time.Unix(1000, 0)
	in := probeInput{Estimate: 1e6, Wanted: 5e6, Sending: 1e6}
	first := p.tick(now, in) // 1 Mbit/s of padding for 20 ms
	if first != 2500 {
		t.Fatalf("first slot %d bytes, want 2500", first)
	}
	if got := p.tick(now.Add(300*time.Millisecond), in); got != 2*first {
		t.Fatalf("after a stall %d bytes, want %d", got, 2*first)
	}
	if got := p.tick(now.Add(300*time.Millisecond), in); got != 0 {
		t.Fatalf("same instant again %d bytes, want 0", got)
	}
}

func TestProberConfirmsAndClimbs(t *testing.T) {
	r := newProbeRun(t)
	gccRate := uint64(1e6)
	in := func() probeInput {
		return probeInput{Estimate: gccRate, Wanted: 5e6, Sending: r.p.estimate(gccRate)}
	}
	r.run(probeCluster+probeSettle+probeSlot, in())
	if r.p.probing() {
		t.Fatal("still probing after the cluster and its settling time")
	}
	if got := r.p.estimate(gccRate); got != 2e6 {
		t.Fatalf("estimate after a good probe %d, want 2e6", got)
	}
	// The next cluster waits probeInterval, then doubles again, then
	// stops at what is wanted plus the headroom an upgrade needs.
	r.run(probeInterval, in())
	r.run(probeCluster+probeSettle+probeSlot, in())
	if got := r.p.estimate(gccRate); got != 4e6 {
		t.Fatalf("after the second probe %d, want 4e6", got)
	}
	r.run(probeInterval+probeCluster+probeSettle+probeSlot, in())
	if got := r.p.estimate(gccRate); got != 5.5e6 {
		t.Fatalf("after the third probe %d, want 5.5e6 (wanted and headroom)", got)
	}
	r.takePad()
	r.run(10*time.Second, in())
	if r.takePad() != 0 {
		t.Fatal("probed with nothing more wanted")
	}

	// gcc catches up: confirmed is forgotten, gcc rules, even downwards.
	gccRate = 5.5e6
	r.run(probeSlot, in())
	gccRate = 4.5e6
	if got := r.p.estimate(gccRate); got != 4.5e6 {
		t.Fatalf("after gcc caught up, estimate %d, want gcc's 4.5e6", got)
	}
}

func TestProberCongestionDropsConfirmed(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  probeInput
	}{
		{"overuse", probeInput{Estimate: 1e6, Wanted: 5e6, Overusing: true}},
		{"loss", probeInput{Estimate: 1e6, Wanted: 5e6, Loss: 0.05}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newProbeRun(t)
			good := probeInput{Estimate: 1e6, Wanted: 5e6}
			r.run(probeCluster+probeSettle+probeSlot, good)
			if r.p.estimate(1e6) != 2e6 {
				t.Fatal("probe did not confirm")
			}
			r.run(probeSlot, tc.bad)
			if got := r.p.estimate(1e6); got != 1e6 {
				t.Fatalf("estimate after congestion %d, want gcc's 1e6", got)
			}
			// Quiet period: no cluster for probeQuiet after congestion.
			r.takePad()
			r.run(probeQuiet-probeSlot, good)
			if r.p.probing() || r.takePad() != 0 {
				t.Fatal("probed within the quiet period after congestion")
			}
			// Congestion this soon after the confirmation revoked it as
			// wrong: the next cluster also waits out the failure backoff.
			r.run(probeInterval<<1-probeQuiet+2*probeSlot, good)
			if !r.p.probing() {
				t.Fatal("no probe after the quiet period and the backoff")
			}
		})
	}
}

func TestProberFailureBacksOff(t *testing.T) {
	r := newProbeRun(t)
	good := probeInput{Estimate: 1e6, Wanted: 5e6}
	bad := good
	bad.Overusing = true
	var waits []time.Duration
	for i := 0; i < 5; i++ {
		// Find the next cluster start.
		start := r.now
		for !r.p.probing() {
			r.run(probeSlot, good)
			if r.now.Sub(start) > time.Minute {
				t.Fatal("no cluster within a minute")
			}
		}
		waits = append(waits, r.now.Sub(start))
		r.run(100*time.Millisecond, good)
		r.run(probeSlot, bad) // the cluster fails
		if r.p.probing() {
			t.Fatal("still probing after overuse")
		}
		if got := r.p.estimate(1e6); got != 1e6 {
			t.Fatalf("a failed probe confirmed %d", got)
		}
	}
	// waits[0] is the immediate first start; later ones are bounded by
	// the quiet period (3 s) and the doubling backoff (5 s, 10 s, 20 s, 20 s).
	want := []time.Duration{probeSlot, 5 * time.Second, 10 * time.Second, probeMaxWait, probeMaxWait}
	for i := range want {
		if d := waits[i] - want[i]; d < -probeSlot || d > probeSlot {
			t.Fatalf("waits %v, want about %v", waits, want)
		}
	}
	// A success resets the backoff.
	for !r.p.probing() {
		r.run(probeSlot, good)
	}
	r.run(probeCluster+probeSettle+probeSlot, good)
	if r.p.failures != 0 || r.p.estimate(1e6) != 2e6 {
		t.Fatalf("after a success: failures %d, estimate %d", r.p.failures, r.p.estimate(1e6))
	}
}

func TestProberFailsOnLateFeedback(t *testing.T) {
	// Overuse reported after the padding stopped, while settling, still
	// fails the probe: that feedback is about the cluster.
	r := newProbeRun(t)
	good := probeInput{Estimate: 1e6, Wanted: 5e6}
	r.run(probeCluster+probeSlot, good)
	if r.p.state != probeSettling {
		t.Fatalf("state %d, want settling", r.p.state)
	}
	r.run(probeSlot, probeInput{Estimate: 1e6, Wanted: 5e6, Loss: 0.03})
	if r.p.probing() || r.p.estimate(1e6) != 1e6 || r.p.failures != 1 {
		t.Fatalf("late loss: probing %v estimate %d failures %d", r.p.probing(), r.p.estimate(1e6), r.p.failures)
	}
}

func TestProberStopsWhenNothingMoreIsWanted(t *testing.T) {
	r := newProbeRun(t)
	r.run(100*time.Millisecond, probeInput{Estimate: 1e6, Wanted: 5e6})
	r.takePad()
	r.run(probeSlot, probeInput{Estimate: 1e6, Wanted: 1e6, Sending: 1e6})
	if r.p.probing() || r.takePad() != 0 || r.p.failures != 0 {
		t.Fatalf("probing %v failures %d after the subscriber wanted less", r.p.probing(), r.p.failures)
	}
}

func TestProberTickAllocatesNothing(t *testing.T) {
	var p prober
	now := time.Unix(1000, 0)
	in := probeInput{Estimate: 1e6, Wanted: 5e6, Sending: 1e6}
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(probeSlot)
		p.tick(now, in)
	}); n != 0 {
		t.Fatalf("tick allocates %v times", n)
	}
}

// Congestion soon after a confirmation revokes it and backs off like a
// failed probe: a wrong verdict must not move the subscriber up again at
// every interval.
func TestProberRevokedConfirmationBacksOff(t *testing.T) {
	var p prober
	now := time.Unix(0, 0)
	in := probeInput{Estimate: 400_000, Wanted: 2_000_000, Sending: 150_000}
	step := func(d time.Duration, in probeInput) {
		for end := now.Add(d); now.Before(end); now = now.Add(probeSlot) {
			p.tick(now, in)
		}
	}
	step(probeCluster+probeSettle+2*probeSlot, in)
	if p.confirmed == 0 {
		t.Fatal("a clean probe was not confirmed")
	}
	congested := in
	congested.Overusing = true
	step(probeSlot, congested)
	if p.confirmed != 0 || p.failures != 1 {
		t.Fatalf("after congestion: confirmed %d, failures %d; want 0 and 1", p.confirmed, p.failures)
	}
	if wait := p.next.Sub(now); wait < probeInterval {
		t.Fatalf("next probe in %v, want a backoff of at least %v", wait, probeInterval)
	}
}
