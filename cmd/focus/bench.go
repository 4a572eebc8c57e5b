package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/focus-sfu/focus/bench"
)

func benchCommand() *cli.Command {
	defServer, defClient := 1, 0
	if bench.UsableCPUs() < 2 {
		defServer = 0
	}
	return &cli.Command{
		Name:  "bench",
		Usage: "measure an SFU's CPU per forwarded packet against the loopback floor, side by side with LiveKit",
		UsageText: "focus bench [--scenario livestream|meeting|audio] [--target focus,livekit,url] [--subscribers N[,N...]]\n" +
			"   [--participants N[,N...]] [--publishers P] [--runs 5] [--duration 20s] [--json] [--plot FILE] ...",
		Description: "Starts a fresh server per run (focus: this binary's `serve`; livekit: livekit-server),\n" +
			"pinned with taskset to --server-cpu, and drives it from this process, pinned to\n" +
			"--client-cpu: publishers of synthetic Opus and VP8, subscribers that watch them.\n" +
			"Over the measured window it reads the server's CPU from /proc and divides it by the\n" +
			"packets the subscribers received; then it times the floor, a loopback sendto()+recv()\n" +
			"of the same size on the server's CPU. A table goes to stdout (or JSON with --json),\n" +
			"progress to stderr. Several sizes make a sweep; --plot draws it. See docs/performance.md.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "scenario", Value: "livestream", Usage: "the load: livestream (1 x N), meeting (N x N, audio+video) or audio (P x S, audio only)"},
			&cli.StringFlag{Name: "target", Value: "focus", Usage: "servers to measure, comma-separated: focus, livekit, url; several run side by side"},
			&cli.StringFlag{Name: "subscribers", Usage: "`LIST` of subscriber counts (livestream, audio); several make a sweep (default: 100 livestream, 50 audio)"},
			&cli.StringFlag{Name: "participants", Value: "10", Usage: "`LIST` of participant counts (meeting); several make a sweep"},
			&cli.IntFlag{Name: "publishers", Value: 10, Usage: "`P` publishers (audio)"},
			&cli.IntFlag{Name: "video-pps", Value: 400, Usage: "video `PACKETS` per second (of the top layer with simulcast)"},
			&cli.IntFlag{Name: "fps", Value: 30, Usage: "video `FRAMES` per second; each frame is a burst of video-pps/fps packets"},
			&cli.IntFlag{Name: "video-size", Value: 1000, Usage: "video RTP payload `BYTES`"},
			&cli.IntFlag{Name: "audio-size", Value: 100, Usage: "audio RTP payload `BYTES` (50 packets a second)"},
			&cli.BoolFlag{Name: "simulcast", Usage: "publish video as three layers, q, h and f (1/16, 1/4 and all of video-pps)"},
			&cli.StringFlag{Name: "feedback", Value: "twcc", Usage: "congestion `FEEDBACK` subscribers send: twcc (transport-wide, as browsers do) or remb (a fixed 100 Mbit/s REMB, nothing held for bandwidth)"},
			&cli.DurationFlag{Name: "keyframe-interval", Value: 2 * time.Second, Usage: "`TIME` between unrequested keyframes (a PLI or FIR brings one at once)"},
			&cli.DurationFlag{Name: "duration", Value: 20 * time.Second, Usage: "measured `TIME` of each run"},
			&cli.DurationFlag{Name: "warmup", Value: 5 * time.Second, Usage: "`TIME` after every subscriber joined, before measuring"},
			&cli.IntFlag{Name: "runs", Value: 5, Usage: "`N` runs per target and size, each with a fresh server"},
			&cli.IntFlag{Name: "join-concurrency", Value: 8, Usage: "`N` subscribers connecting at once"},
			&cli.DurationFlag{Name: "floor-time", Value: 2 * time.Second, Usage: "`TIME` the floor loop runs in each run"},
			&cli.IntFlag{Name: "server-cpu", Value: defServer, Usage: "`CPU` the server and the floor are pinned to (taskset); -1 leaves them unpinned"},
			&cli.IntFlag{Name: "client-cpu", Value: defClient, Usage: "`CPU` the generator (this process) is pinned to; -1 leaves it unpinned"},
			&cli.StringFlag{Name: "livekit-bin", Usage: "livekit-server `BINARY` (default: livekit-server on PATH, else server in ~/go/bin)"},
			&cli.StringFlag{Name: "whip-url", Usage: "url target: WHIP `URL` template, {room} replaced (http://host:8080/whip/{room})"},
			&cli.StringFlag{Name: "whep-url", Usage: "url target: WHEP `URL` template, {room} and {stream} replaced (http://host:8080/whep/{room}?stream={stream})"},
			&cli.StringFlag{Name: "room", Value: "bench", Usage: "url target: `ROOM` name"},
			&cli.StringSliceFlag{Name: "header", Usage: "url target: `NAME: VALUE` header sent with every request (repeatable)"},
			&cli.IntFlag{Name: "pid", Usage: "url target: the server's `PID`, for its CPU and memory (without it those are left out)"},
			&cli.StringFlag{Name: "log-dir", Usage: "keep each server's config and log under `DIR` (default: a temporary directory, removed)"},
			&cli.BoolFlag{Name: "json", Usage: "write the report as JSON (schema in docs/performance.md) instead of the table"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write the generator's own CPU profile (pprof) to `FILE`, to see what limits it"},
			&cli.StringFlag{Name: "plot", Usage: "draw CPU per packet against size for each target into the PNG `FILE`"},
		},
		OnUsageError:    usageError,
		Action:          benchAction,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{{
			Name:   "floor",
			Hidden: true,
			Usage:  "run the floor loop and print its result as JSON (used by focus bench)",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "size", Value: 1000},
				&cli.DurationFlag{Name: "time", Value: 2 * time.Second},
			},
			Action: func(c *cli.Context) error {
				r, err := bench.RunFloor(c.Int("size"), c.Duration("time"))
				if err != nil {
					return runtimeError{err}
				}
				return json.NewEncoder(c.App.Writer).Encode(r)
			},
		}},
	}
}

func benchAction(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("bench takes no arguments, got %q; see focus bench --help", c.Args().First())
	}
	o, err := benchOptions(c)
	if err != nil {
		return err
	}
	if o.ClientCPU >= 0 {
		// Does not return in the first process: it re-executes this
		// command pinned, which then carries on here.
		if err := bench.PinSelf(o.ClientCPU); err != nil {
			return runtimeError{err}
		}
	}
	// The generator's pion connections allocate some 20 MB/s at 100
	// subscribers; at the default GOGC its garbage collector would run
	// every second or so and, on the generator's one CPU, hold the receive
	// loops up for ~15 ms each time: delay spikes that the server's
	// congestion control reads as a queue. A tenfold heap goal makes that
	// rare (the heap stays a few hundred MB).
	debug.SetGCPercent(1000)
	if path := c.String("cpuprofile"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return runtimeError{fmt.Errorf("cpu profile: %w", err)}
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return runtimeError{fmt.Errorf("cpu profile: %w", err)}
		}
		defer pprof.StopCPUProfile()
	}
	tty := isTerminal(c.App.ErrWriter)
	o.Progress = bench.NewProgress(c.App.ErrWriter, tty)
	if o.ServerCPU >= 0 && o.ServerCPU == o.ClientCPU {
		fmt.Fprintf(c.App.ErrWriter, "focus bench: warning: server and generator share CPU %d; the figures will mix their work\n", o.ServerCPU)
	}
	rep, runErr := bench.Run(c.Context, o)
	o.Progress.Done()
	if rep == nil {
		return runtimeError{runErr}
	}
	if c.Bool("json") {
		err = rep.WriteJSON(c.App.Writer)
	} else {
		err = rep.WriteTable(c.App.Writer)
	}
	if err != nil {
		return runtimeError{err}
	}
	if path := c.String("plot"); path != "" {
		if err := rep.WritePlot(path); err != nil {
			return runtimeError{err}
		}
	}
	if runErr != nil {
		return runtimeError{runErr}
	}
	return nil
}

// benchOptions checks the flags and builds the bench's options.
func benchOptions(c *cli.Context) (bench.Options, error) {
	sc, err := bench.ParseScenario(c.String("scenario"))
	if err != nil {
		return bench.Options{}, err
	}
	fb, err := bench.ParseFeedback(c.String("feedback"))
	if err != nil {
		return bench.Options{}, err
	}
	o := bench.Options{
		Scenario:   sc,
		Publishers: c.Int("publishers"),
		Load: bench.Load{
			VideoPPS: c.Int("video-pps"), FPS: c.Int("fps"),
			VideoSize: c.Int("video-size"), AudioSize: c.Int("audio-size"),
			Simulcast: c.Bool("simulcast"), KeyframeInterval: c.Duration("keyframe-interval"),
			Feedback: fb,
		},
		Runs:            c.Int("runs"),
		Warmup:          c.Duration("warmup"),
		Duration:        c.Duration("duration"),
		JoinConcurrency: c.Int("join-concurrency"),
		ServerCPU:       c.Int("server-cpu"),
		ClientCPU:       c.Int("client-cpu"),
		FloorTime:       c.Duration("floor-time"),
	}
	for _, f := range []struct {
		name string
		min  int
	}{{"publishers", 1}, {"video-pps", 1}, {"fps", 1}, {"video-size", 40}, {"audio-size", 24}, {"runs", 1}, {"join-concurrency", 1}} {
		if v := c.Int(f.name); v < f.min {
			return bench.Options{}, fmt.Errorf("--%s %d: must be at least %d", f.name, v, f.min)
		}
	}
	if v := c.Int("video-size"); v > 1200 {
		return bench.Options{}, fmt.Errorf("--video-size %d: must be at most 1200 (an RTP packet must fit one datagram)", v)
	}
	for _, name := range []string{"duration", "floor-time", "keyframe-interval"} {
		if c.Duration(name) <= 0 {
			return bench.Options{}, fmt.Errorf("--%s must be positive", name)
		}
	}
	if c.Duration("warmup") < 0 {
		return bench.Options{}, errors.New("--warmup must not be negative")
	}
	sizeFlag, def := "subscribers", "100"
	switch sc {
	case bench.Meeting:
		sizeFlag, def = "participants", c.String("participants")
		if c.IsSet("subscribers") {
			return bench.Options{}, errors.New("a meeting is sized with --participants, not --subscribers")
		}
	case bench.Audio:
		def = "50"
	}
	list := c.String(sizeFlag)
	if list == "" {
		list = def
	}
	if o.Sizes, err = parseSizes(list); err != nil {
		return bench.Options{}, fmt.Errorf("--%s: %w", sizeFlag, err)
	}
	for _, cpu := range []int{o.ServerCPU, o.ClientCPU} {
		// A re-executed, pinned generator may only use its own CPU; the
		// first process checked both.
		if cpu >= 0 && !bench.Pinned() {
			if err := bench.CheckCPU(cpu); err != nil {
				return bench.Options{}, err
			}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return bench.Options{}, runtimeError{fmt.Errorf("find own binary: %w", err)}
	}
	o.FloorCommand = []string{exe, "bench", "floor"}
	o.Targets, err = benchTargets(c, exe)
	return o, err
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a whole number of at least 1", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func benchTargets(c *cli.Context, exe string) ([]bench.Target, error) {
	var ts []bench.Target
	seen := map[string]bool{}
	for name := range strings.SplitSeq(c.String("target"), ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if seen[name] {
			return nil, fmt.Errorf("--target lists %q twice", name)
		}
		seen[name] = true
		switch name {
		case "focus":
			ts = append(ts, &bench.FocusTarget{Command: []string{exe}, CPU: c.Int("server-cpu"), LogDir: c.String("log-dir")})
		case "livekit":
			bin, err := bench.FindLiveKit(c.String("livekit-bin"))
			if err != nil {
				return nil, err
			}
			ts = append(ts, &bench.LiveKitTarget{Binary: bin, CPU: c.Int("server-cpu"), LogDir: c.String("log-dir")})
		case "url":
			h := http.Header{}
			for _, kv := range c.StringSlice("header") {
				k, v, ok := strings.Cut(kv, ":")
				if !ok || strings.TrimSpace(k) == "" {
					return nil, fmt.Errorf("--header %q: want NAME: VALUE", kv)
				}
				h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			if c.String("whip-url") == "" || c.String("whep-url") == "" {
				return nil, errors.New("--target url needs --whip-url and --whep-url")
			}
			ts = append(ts, &bench.URLTarget{WHIP: c.String("whip-url"), WHEP: c.String("whep-url"),
				Room: c.String("room"), Header: h, PID: c.Int("pid")})
		default:
			return nil, fmt.Errorf("--target: unknown target %q (focus, livekit or url)", name)
		}
	}
	return ts, nil
}

// isTerminal reports whether w is a terminal, for the progress line.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
