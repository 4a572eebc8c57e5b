// Package bench is the load generator and measurement of `focus bench`.
//
// It starts an SFU (a Target) afresh for each run, connects publishers
// that send synthetic Opus and VP8 (stamped with a counter and a send time,
// no encoder), connects subscribers that watch them, and measures over a
// window: the server's CPU per forwarded packet, read from /proc; the
// floor, the CPU of one loopback sendto()+recv() of the same size on the
// same CPU, measured in the same run by a child process; delivered
// fraction; one-way delay; setup time; RSS per subscriber; bit rates.
// docs/performance.md describes the method.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/pion/transport/v4/stdnet"
)

// Options configure an invocation of the bench.
type Options struct {
	Scenario Scenario
	// Sizes are the scenario sizes to run: subscribers (audio,
	// livestream) or participants (meeting). Several make a sweep.
	Sizes []int
	// Publishers is the number of publishers of the audio scenario.
	Publishers int
	Load       Load
	// Targets are the servers to measure, side by side.
	Targets []Target
	// Runs is the number of runs per target and size, each with a fresh
	// server.
	Runs int
	// Settle is the wait after the publishers connect, before the server's
	// RSS is read and the subscribers join.
	Settle time.Duration
	// Warmup is the wait after every subscriber joined, Duration the
	// measured window, Drain the wait after it for packets in flight.
	Warmup, Duration, Drain time.Duration
	// JoinConcurrency is how many subscribers connect at once.
	JoinConcurrency int
	// ServerCPU is the CPU the servers and the floor child are pinned to
	// (-1: unpinned); ClientCPU is the generator's, for the report (the
	// caller pins the generator).
	ServerCPU, ClientCPU int
	// FloorCommand runs this binary's floor mode (see MeasureFloor); nil
	// skips the floor. FloorTime is how long the floor loop runs.
	FloorCommand []string
	FloorTime    time.Duration
	// Progress reports what is going on; nil is silent.
	Progress *Progress
}

// Defaults fills unset options with the defaults of `focus bench`.
func (o *Options) Defaults() {
	if o.Scenario == "" {
		o.Scenario = Livestream
	}
	if len(o.Sizes) == 0 {
		o.Sizes = []int{100}
	}
	if o.Publishers <= 0 {
		o.Publishers = 1
	}
	l := &o.Load
	if l.VideoPPS <= 0 {
		l.VideoPPS = 400
	}
	if l.FPS <= 0 {
		l.FPS = 30
	}
	if l.VideoSize <= 0 {
		l.VideoSize = 1000
	}
	if l.AudioSize <= 0 {
		l.AudioSize = 100
	}
	if l.KeyframeInterval <= 0 {
		l.KeyframeInterval = 2 * time.Second
	}
	if l.Feedback == "" {
		l.Feedback = FeedbackTWCC
	}
	if o.Runs <= 0 {
		o.Runs = 5
	}
	if o.Settle <= 0 {
		o.Settle = time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Duration <= 0 {
		o.Duration = 20 * time.Second
	}
	if o.Drain <= 0 {
		o.Drain = 500 * time.Millisecond
	}
	if o.JoinConcurrency <= 0 {
		o.JoinConcurrency = 8
	}
	if o.FloorTime <= 0 {
		o.FloorTime = 2 * time.Second
	}
}

// Run measures every target at every size, Runs times each, interleaving
// the targets run by run so that drift in the machine touches them alike.
// It returns the report even when some runs failed, with an error naming
// them.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.Defaults()
	if len(o.Targets) == 0 {
		return nil, errors.New("bench: no target")
	}
	pubAPI, err := newAPI(true, o.Load.Feedback, nil)
	if err != nil {
		return nil, err
	}
	osNet, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("bench: network: %w", err)
	}
	rep := newReport(o)
	r := &runner{o: &o, pubAPI: pubAPI, osNet: osNet, prog: o.Progress, versions: map[string]string{}}
	var failures []error
	for _, size := range o.Sizes {
		plan, err := NewPlan(o.Scenario, size, o.Publishers)
		if err != nil {
			return nil, err
		}
		results := make([]*Result, len(o.Targets))
		for i, t := range o.Targets {
			results[i] = &Result{Target: t.Name(), Size: size, Publishers: len(plan.Publishers), SubscriberConnections: len(plan.Subscribers)}
		}
		for n := 1; n <= o.Runs; n++ {
			for i, t := range o.Targets {
				label := fmt.Sprintf("%s %s=%d run %d/%d", t.Name(), o.Scenario.SizeName(), size, n, o.Runs)
				res := r.run(ctx, t, plan, label, n)
				results[i].Runs = append(results[i].Runs, res)
				if res.Error != "" {
					failures = append(failures, fmt.Errorf("%s: %s", label, res.Error))
				}
				r.prog.Result(label, res)
				if err := ctx.Err(); err != nil {
					return rep, err
				}
			}
		}
		for i, t := range o.Targets {
			results[i].Version = r.versions[t.Name()]
			results[i].summarise()
			rep.Results = append(rep.Results, *results[i])
		}
	}
	rep.compare()
	return rep, errors.Join(failures...)
}

// host describes the machine for the report.
func host() Host {
	// runtime.NumCPU counts only the CPUs this (pinned) process may use.
	h := Host{GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			switch k = strings.TrimSpace(k); {
			case !ok:
			case k == "processor":
				h.CPUs++
			case k == "model name" && h.CPUModel == "":
				h.CPUModel = strings.TrimSpace(v)
			}
		}
	}
	return h
}
