package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Schema names the version of the JSON report. A change that renames or
// drops a field, or changes a unit, gets a new number.
const Schema = "focus-bench/1"

// Report is everything an invocation measured; `focus bench --json`
// writes it. docs/performance.md documents the fields.
type Report struct {
	Schema      string       `json:"schema"`
	Started     time.Time    `json:"started"`
	Host        Host         `json:"host"`
	Config      Config       `json:"config"`
	Results     []Result     `json:"results"`
	Comparisons []Comparison `json:"comparisons,omitempty"`
}

// Host is the machine.
type Host struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	OS        string `json:"os"`
	GoVersion string `json:"go"`
}

// Config is the load and the method of an invocation.
type Config struct {
	Scenario         string   `json:"scenario"`
	SizeName         string   `json:"size_name"`
	Sizes            []int    `json:"sizes"`
	Publishers       int      `json:"publishers"`
	Targets          []string `json:"targets"`
	VideoPPS         int      `json:"video_pps"`
	FPS              int      `json:"fps"`
	VideoBytes       int      `json:"video_bytes"`
	AudioPPS         int      `json:"audio_pps"`
	AudioBytes       int      `json:"audio_bytes"`
	Simulcast        bool     `json:"simulcast"`
	KeyframeInterval float64  `json:"keyframe_interval_s"`
	Feedback         string   `json:"feedback"`
	Runs             int      `json:"runs"`
	Settle           float64  `json:"settle_s"`
	Warmup           float64  `json:"warmup_s"`
	Duration         float64  `json:"duration_s"`
	Drain            float64  `json:"drain_s"`
	JoinConcurrency  int      `json:"join_concurrency"`
	ServerCPU        int      `json:"server_cpu"`
	ClientCPU        int      `json:"client_cpu"`
	FloorTime        float64  `json:"floor_time_s"`
}

// Result is one target at one size: every run, and the spread of each
// figure over the runs that measured it.
type Result struct {
	Target                string      `json:"target"`
	Version               string      `json:"version"`
	Size                  int         `json:"size"`
	Publishers            int         `json:"publishers"`
	SubscriberConnections int         `json:"subscriber_connections"`
	Runs                  []RunResult `json:"runs"`
	Summary               Summary     `json:"summary"`
}

// Summary is the median and range of each figure over the runs.
type Summary struct {
	CPUPerPacket     Spread `json:"cpu_us_per_packet"`
	Floor            Spread `json:"floor_us_per_datagram"`
	FloorRatio       Spread `json:"floor_ratio"`
	Delivered        Spread `json:"delivered"`
	DeliveredAudio   Spread `json:"delivered_audio"`
	DeliveredVideo   Spread `json:"delivered_video"`
	WorstDelivered   Spread `json:"worst_delivered"`
	DelayP50         Spread `json:"delay_p50_ms"`
	DelayP99         Spread `json:"delay_p99_ms"`
	ReadDelayP50     Spread `json:"read_delay_p50_ms"`
	ReadDelayP99     Spread `json:"read_delay_p99_ms"`
	SetupMedian      Spread `json:"setup_median_ms"`
	SetupMax         Spread `json:"setup_max_ms"`
	AnswerMedian     Spread `json:"answer_median_ms"`
	ConnectMedian    Spread `json:"connect_median_ms"`
	RSSPerSubscriber Spread `json:"rss_per_subscriber_bytes"`
	BitrateIn        Spread `json:"bitrate_in_bps"`
	BitrateOut       Spread `json:"bitrate_out_bps"`
	ServerCPUUtil    Spread `json:"server_cpu_util"`
	ClientCPUUtil    Spread `json:"client_cpu_util"`
	UDPDrops         Spread `json:"udp_buffer_drops"`
	// FailedRuns counts runs that ended in an error.
	FailedRuns int `json:"failed_runs"`
}

// Comparison is the first target's CPU per packet over another's, from
// the medians at one size.
type Comparison struct {
	Size     int    `json:"size"`
	Target   string `json:"target"`
	Baseline string `json:"baseline"`
	CPURatio Figure `json:"cpu_ratio"`
}

func newReport(o Options) *Report {
	c := Config{
		Scenario: string(o.Scenario), SizeName: o.Scenario.SizeName(), Sizes: o.Sizes,
		VideoPPS: o.Load.VideoPPS, FPS: o.Load.FPS, VideoBytes: o.Load.VideoSize,
		AudioPPS: int(time.Second / audioInterval), AudioBytes: o.Load.AudioSize,
		Simulcast: o.Load.Simulcast, KeyframeInterval: o.Load.KeyframeInterval.Seconds(), Feedback: string(o.Load.Feedback),
		Runs: o.Runs, Settle: o.Settle.Seconds(), Warmup: o.Warmup.Seconds(), Duration: o.Duration.Seconds(),
		Drain: o.Drain.Seconds(), JoinConcurrency: o.JoinConcurrency,
		ServerCPU: o.ServerCPU, ClientCPU: o.ClientCPU, FloorTime: o.FloorTime.Seconds(),
	}
	if o.Scenario == Audio {
		c.Publishers = o.Publishers
	}
	for _, t := range o.Targets {
		c.Targets = append(c.Targets, t.Name())
	}
	return &Report{Schema: Schema, Started: time.Now().UTC(), Host: host(), Config: c}
}

func (r *Result) summarise() {
	pick := func(f func(RunResult) Figure) Spread {
		v := make([]Figure, 0, len(r.Runs))
		for _, run := range r.Runs {
			v = append(v, f(run))
		}
		return SpreadOf(v)
	}
	s := &r.Summary
	s.CPUPerPacket = pick(func(x RunResult) Figure { return x.CPUPerPacket })
	s.Floor = pick(func(x RunResult) Figure { return x.Floor })
	s.FloorRatio = pick(func(x RunResult) Figure { return x.FloorRatio })
	s.Delivered = pick(func(x RunResult) Figure { return x.Delivered })
	s.DeliveredAudio = pick(func(x RunResult) Figure { return x.DeliveredAudio })
	s.DeliveredVideo = pick(func(x RunResult) Figure { return x.DeliveredVideo })
	s.WorstDelivered = pick(func(x RunResult) Figure { return x.WorstDelivered })
	s.DelayP50 = pick(func(x RunResult) Figure { return x.DelayP50 })
	s.DelayP99 = pick(func(x RunResult) Figure { return x.DelayP99 })
	s.ReadDelayP50 = pick(func(x RunResult) Figure { return x.ReadDelayP50 })
	s.ReadDelayP99 = pick(func(x RunResult) Figure { return x.ReadDelayP99 })
	s.SetupMedian = pick(func(x RunResult) Figure { return x.SetupMedian })
	s.SetupMax = pick(func(x RunResult) Figure { return x.SetupMax })
	s.AnswerMedian = pick(func(x RunResult) Figure { return x.AnswerMedian })
	s.ConnectMedian = pick(func(x RunResult) Figure { return x.ConnectMedian })
	s.RSSPerSubscriber = pick(func(x RunResult) Figure { return x.RSSPerSubscriber })
	s.BitrateIn = pick(func(x RunResult) Figure { return x.BitrateIn })
	s.BitrateOut = pick(func(x RunResult) Figure { return x.BitrateOut })
	s.ServerCPUUtil = pick(func(x RunResult) Figure { return x.ServerCPUUtil })
	s.ClientCPUUtil = pick(func(x RunResult) Figure { return x.ClientCPUUtil })
	s.UDPDrops = pick(func(x RunResult) Figure { return x.UDPDrops })
	for _, run := range r.Runs {
		if run.Error != "" {
			s.FailedRuns++
		}
	}
}

// compare sets the first target's CPU ratio to each other target's, per
// size.
func (rep *Report) compare() {
	bySize := map[int][]Result{}
	var sizes []int
	for _, r := range rep.Results {
		if _, ok := bySize[r.Size]; !ok {
			sizes = append(sizes, r.Size)
		}
		bySize[r.Size] = append(bySize[r.Size], r)
	}
	for _, size := range sizes {
		rs := bySize[size]
		for _, b := range rs[1:] {
			c := Comparison{Size: size, Target: rs[0].Target, Baseline: b.Target, CPURatio: Missing}
			if a, bb := rs[0].Summary.CPUPerPacket.Median, b.Summary.CPUPerPacket.Median; a.Valid() && bb.Valid() && bb > 0 {
				c.CPURatio = a / bb
			}
			rep.Comparisons = append(rep.Comparisons, c)
		}
	}
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// row is one line of the human table: a figure, its format and scale.
type row struct {
	name   string
	format string
	scale  float64
	get    func(Summary) Spread
}

var tableRows = []row{
	{"CPU µs / forwarded packet", "%.2f", 1, func(s Summary) Spread { return s.CPUPerPacket }},
	{"floor µs / datagram", "%.2f", 1, func(s Summary) Spread { return s.Floor }},
	{"ratio to floor", "%.2f", 1, func(s Summary) Spread { return s.FloorRatio }},
	{"delivered", "%.4f", 1, func(s Summary) Spread { return s.Delivered }},
	{"  audio", "%.4f", 1, func(s Summary) Spread { return s.DeliveredAudio }},
	{"  video", "%.4f", 1, func(s Summary) Spread { return s.DeliveredVideo }},
	{"  worst subscriber", "%.4f", 1, func(s Summary) Spread { return s.WorstDelivered }},
	{"delay p50 ms", "%.2f", 1, func(s Summary) Spread { return s.DelayP50 }},
	{"delay p99 ms", "%.2f", 1, func(s Summary) Spread { return s.DelayP99 }},
	{"  to read loop p99 ms", "%.2f", 1, func(s Summary) Spread { return s.ReadDelayP99 }},
	{"setup median ms", "%.0f", 1, func(s Summary) Spread { return s.SetupMedian }},
	{"setup max ms", "%.0f", 1, func(s Summary) Spread { return s.SetupMax }},
	{"  answer median ms", "%.0f", 1, func(s Summary) Spread { return s.AnswerMedian }},
	{"  connected median ms", "%.0f", 1, func(s Summary) Spread { return s.ConnectMedian }},
	{"RSS KiB / subscriber", "%.0f", 1.0 / 1024, func(s Summary) Spread { return s.RSSPerSubscriber }},
	{"bit rate in Mbit/s", "%.2f", 1e-6, func(s Summary) Spread { return s.BitrateIn }},
	{"bit rate out Mbit/s", "%.1f", 1e-6, func(s Summary) Spread { return s.BitrateOut }},
	{"server CPU (cores)", "%.2f", 1, func(s Summary) Spread { return s.ServerCPUUtil }},
	{"generator CPU (cores)", "%.2f", 1, func(s Summary) Spread { return s.ClientCPUUtil }},
	{"UDP buffer drops", "%.0f", 1, func(s Summary) Spread { return s.UDPDrops }},
}

func formatSpread(s Spread, format string, scale float64) string {
	if s.N == 0 {
		return "-"
	}
	f := func(x Figure) string { return fmt.Sprintf(format, float64(x)*scale) }
	if s.N == 1 || s.Min == s.Max {
		return f(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

// WriteTable writes the human table: per size, one column per target,
// each figure's median over the runs and its range.
func (rep *Report) WriteTable(w io.Writer) error {
	c := rep.Config
	var b strings.Builder
	fmt.Fprintf(&b, "focus bench: %s", c.Scenario)
	if c.Scenario == string(Audio) {
		fmt.Fprintf(&b, ", %d publishers", c.Publishers)
	}
	load := fmt.Sprintf("Opus %d pps x %d B", c.AudioPPS, c.AudioBytes)
	if c.Scenario != string(Audio) {
		sim := ""
		if c.Simulcast {
			sim = " simulcast q/h/f"
		}
		load = fmt.Sprintf("VP8%s %d pps x %d B + ", sim, c.VideoPPS, c.VideoBytes) + load
	}
	fmt.Fprintf(&b, "; %s; %s feedback; %d run(s) of %gs after %gs warm-up; server CPU %d, generator CPU %d; %d CPUs, %s\n",
		load, c.Feedback, c.Runs, c.Duration, c.Warmup, c.ServerCPU, c.ClientCPU, rep.Host.CPUs, rep.Host.CPUModel)

	i := 0
	for i < len(rep.Results) {
		size := rep.Results[i].Size
		j := i
		for j < len(rep.Results) && rep.Results[j].Size == size {
			j++
		}
		group := rep.Results[i:j]
		i = j
		fmt.Fprintf(&b, "\n%s: %d (%d subscriber connections)\n", c.SizeName, size, group[0].SubscriberConnections)
		tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
		fmt.Fprint(tw, "")
		for _, r := range group {
			fmt.Fprintf(tw, "\t%s", r.Target)
		}
		fmt.Fprintln(tw)
		fmt.Fprint(tw, "version")
		for _, r := range group {
			fmt.Fprintf(tw, "\t%s", shortVersion(r.Version))
		}
		fmt.Fprintln(tw)
		for _, row := range tableRows {
			fmt.Fprint(tw, row.name)
			for _, r := range group {
				fmt.Fprintf(tw, "\t%s", formatSpread(row.get(r.Summary), row.format, row.scale))
			}
			fmt.Fprintln(tw)
		}
		fmt.Fprint(tw, "failed runs")
		for _, r := range group {
			fmt.Fprintf(tw, "\t%d/%d", r.Summary.FailedRuns, len(r.Runs))
		}
		fmt.Fprintln(tw)
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, cmp := range rep.Comparisons {
			if cmp.Size == size && cmp.CPURatio.Valid() {
				fmt.Fprintf(&b, "%s / %s CPU per forwarded packet: %.2f\n", cmp.Target, cmp.Baseline, float64(cmp.CPURatio))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shortVersion keeps a version line short enough for a table column.
func shortVersion(v string) string {
	if v == "" {
		return "-"
	}
	if f := strings.Fields(v); len(f) >= 2 && (f[0] == "focus" || f[0] == "livekit-server") {
		if f[0] == "livekit-server" && len(f) >= 3 {
			return f[2]
		}
		return f[1]
	}
	if len(v) > 24 {
		return v[:24]
	}
	return v
}
