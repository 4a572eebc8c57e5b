package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

// sampleReport is a sweep of two targets at two sizes, with one failed run.
func sampleReport() *Report {
	o := Options{Scenario: Livestream, Sizes: []int{10, 100}, Runs: 2,
		Targets: []Target{&FocusTarget{}, &LiveKitTarget{}}, ServerCPU: 1, ClientCPU: 0}
	o.Defaults()
	rep := newReport(o)
	run := func(n int, cpu, floor float64) RunResult {
		r := failedRun(n, errNoStart) // every figure missing...
		r.Error = ""                  // ...then filled in
		r.CPUPerPacket, r.Floor, r.FloorRatio = Figure(cpu), Figure(floor), Figure(cpu/floor)
		r.Delivered, r.DelayP50, r.DelayP99 = 1, 0.5, 2
		r.SetupMedian, r.RSSPerSubscriber = 80, 300*1024
		r.BitrateIn, r.BitrateOut = 3.2e6, 320e6
		return r
	}
	for _, size := range o.Sizes {
		for i, name := range []string{"focus", "livekit"} {
			res := Result{Target: name, Size: size, Publishers: 1, SubscriberConnections: size}
			base := 6.0 + 3*float64(i)
			res.Runs = []RunResult{run(1, base, 5), run(2, base+0.4, 5.2)}
			if name == "livekit" && size == 10 {
				res.Runs[1] = failedRun(2, errNoStart)
			}
			res.summarise()
			rep.Results = append(rep.Results, res)
		}
	}
	rep.compare()
	return rep
}

var errNoStart = errors.New("server did not start")

func TestReportSummary(t *testing.T) {
	rep := sampleReport()
	f := rep.Results[0]
	if s := f.Summary.CPUPerPacket; s.Median != 6.2 || s.Min != 6 || s.Max != 6.4 || s.N != 2 {
		t.Errorf("focus CPU spread %+v", s)
	}
	lk := rep.Results[1]
	if lk.Summary.FailedRuns != 1 || lk.Summary.CPUPerPacket.N != 1 {
		t.Errorf("livekit at 10: %d failed, CPU from %d runs; want 1 and 1", lk.Summary.FailedRuns, lk.Summary.CPUPerPacket.N)
	}
	if len(rep.Comparisons) != 2 {
		t.Fatalf("%d comparisons, want one per size", len(rep.Comparisons))
	}
	if c := rep.Comparisons[1]; c.Size != 100 || c.Target != "focus" || c.Baseline != "livekit" || math.Abs(float64(c.CPURatio)-6.2/9.2) > 1e-12 {
		t.Errorf("comparison %+v, want focus/livekit = %v at 100", c, 6.2/9.2)
	}
}

func TestReportJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("the report does not read back: %v\n%s", err, b.String())
	}
	if back.Schema != Schema || len(back.Results) != 4 || back.Config.Scenario != "livestream" || back.Config.SizeName != "subscribers" {
		t.Errorf("read back %+v", back)
	}
	// A failed run's figures are null, not NaN (which JSON cannot hold).
	failed := back.Results[1].Runs[1]
	if failed.Error == "" || failed.CPUPerPacket.Valid() {
		t.Errorf("failed run read back as %+v", failed)
	}
	for _, key := range []string{`"cpu_us_per_packet"`, `"floor_us_per_datagram"`, `"floor_ratio"`, `"delivered"`,
		`"delay_p99_ms"`, `"setup_median_ms"`, `"rss_per_subscriber_bytes"`, `"bitrate_out_bps"`, `"comparisons"`} {
		if !strings.Contains(b.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestReportTable(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"focus bench: livestream", "subscribers: 10", "subscribers: 100",
		"CPU µs / forwarded packet", "6.20 (6.00–6.40)", "focus / livekit CPU per forwarded packet: 0.67",
		"failed runs", "0/2", "1/2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, false)
	p.Stage("focus run 1/1", "publishing 1")
	p.Count("focus run 1/1", "joining", 0, 3)
	p.Count("focus run 1/1", "joining", 2, 3) // not shown off a terminal
	p.Result("focus run 1/1", RunResult{CPUPerPacket: 4.5, Floor: Missing, FloorRatio: Missing, Delivered: 1,
		DelayP99: 1, SetupMedian: 50, ServerCPUUtil: 0.4, ClientCPUUtil: 0.3})
	p.Done()
	want := "focus run 1/1: publishing 1\nfocus run 1/1: joining (3)\n" +
		"focus run 1/1: 4.50 µs/packet, floor - µs (x-), delivered 1.0000, delay p99 1.00 ms, setup 50 ms, server 0.40 cores, generator 0.30\n"
	if b.String() != want {
		t.Errorf("progress off a terminal:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	p = NewProgress(&b, true)
	p.Count("x", "joining", 1, 2)
	p.Done()
	if got := b.String(); !strings.Contains(got, "\r\x1b[Kx: joining [############............] 1/2") || !strings.HasSuffix(got, "\r\x1b[K") {
		t.Errorf("terminal progress %q", got)
	}
	var silent *Progress
	silent.Stage("x", "y") // a nil Progress is silent
	silent.Done()
}
