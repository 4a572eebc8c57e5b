package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// RunResult is what one run measured. Figures it could not measure (CPU
// and memory without the server's process) are missing.
type RunResult struct {
	Run int `json:"run"`
	// Error is why the run failed; its figures are then missing.
	Error string `json:"error,omitempty"`
	// WindowSeconds is the length of the measured window.
	WindowSeconds float64 `json:"window_s"`
	// Packets sent by the publishers, expected at the subscribers (each
	// sent packet once per subscriber connection of its stream), and
	// received there, all by the send time stamped in them falling in the
	// window.
	PacketsSent     int64 `json:"packets_sent"`
	PacketsExpected int64 `json:"packets_expected"`
	PacketsReceived int64 `json:"packets_received"`
	// Delivered is received / expected; DeliveredAudio and DeliveredVideo
	// the same for one kind; WorstDelivered that of the subscriber
	// connection that got the smallest share.
	Delivered      Figure `json:"delivered"`
	DeliveredAudio Figure `json:"delivered_audio"`
	DeliveredVideo Figure `json:"delivered_video"`
	WorstDelivered Figure `json:"worst_delivered"`
	// ServerCPUSeconds is the server's user+system CPU in the window;
	// ServerCPUUtil that over the window's length (1 = one core busy).
	ServerCPUSeconds Figure `json:"server_cpu_s"`
	ServerCPUUtil    Figure `json:"server_cpu_util"`
	// CPUPerPacket is the server's CPU per packet received by a
	// subscriber (a forwarded packet), in µs.
	CPUPerPacket Figure `json:"cpu_us_per_packet"`
	// Floor is the CPU of one loopback sendto()+recv() of FloorBytes, in
	// µs, on the server's CPU; FloorRatio is CPUPerPacket / Floor.
	FloorBytes int    `json:"floor_datagram_bytes"`
	Floor      Figure `json:"floor_us_per_datagram"`
	FloorRatio Figure `json:"floor_ratio"`
	// Delay percentiles in ms, from the send time stamped in a packet to
	// its arrival at the subscriber's socket (the kernel's receive
	// timestamp): what the server adds, with the publisher's send path and
	// loopback. ReadDelay is to the subscriber's read loop instead, which
	// adds the generator's own scheduling; a large difference means the
	// generator is slow.
	DelayP50     Figure `json:"delay_p50_ms"`
	DelayP99     Figure `json:"delay_p99_ms"`
	ReadDelayP50 Figure `json:"read_delay_p50_ms"`
	ReadDelayP99 Figure `json:"read_delay_p99_ms"`
	// Setup is from POSTing a subscriber's offer to its first video
	// keyframe packet (first audio packet when it has no video), in ms,
	// median and maximum over the subscriber connections.
	SetupMedian Figure `json:"setup_median_ms"`
	SetupMax    Figure `json:"setup_max_ms"`
	// AnswerMedian is the median time from the offer to the server's
	// answer, ConnectMedian to the connection being connected (ICE and
	// DTLS done; polled every 5 ms), in ms: the parts of the setup.
	AnswerMedian  Figure `json:"answer_median_ms"`
	ConnectMedian Figure `json:"connect_median_ms"`
	// RSS of the server after the publishers and before the subscribers,
	// then at the end of the window, and the growth per subscriber
	// connection, in bytes.
	RSSBefore        Figure `json:"rss_before_bytes"`
	RSSAfter         Figure `json:"rss_after_bytes"`
	RSSPerSubscriber Figure `json:"rss_per_subscriber_bytes"`
	// Bit rates of RTP payload into the server (all publishers) and out of
	// it (all subscribers), in bit/s.
	BitrateIn  Figure `json:"bitrate_in_bps"`
	BitrateOut Figure `json:"bitrate_out_bps"`
	// ClientCPUUtil is the generator's own CPU over the window: near 1 the
	// generator, not the server, may be what limits delivery.
	ClientCPUUtil Figure `json:"client_cpu_util"`
	// UDPDrops is how many datagrams the kernel dropped in the window for
	// a full socket buffer (RcvbufErrors + SndbufErrors of
	// /proc/net/snmp, for the whole machine): where lost packets went.
	UDPDrops Figure `json:"udp_buffer_drops"`
}

func failedRun(run int, err error) RunResult {
	m := Missing
	return RunResult{Run: run, Error: err.Error(), Delivered: m, DeliveredAudio: m, DeliveredVideo: m, WorstDelivered: m, ServerCPUSeconds: m, ServerCPUUtil: m,
		CPUPerPacket: m, Floor: m, FloorRatio: m, DelayP50: m, DelayP99: m, ReadDelayP50: m, ReadDelayP99: m, SetupMedian: m, SetupMax: m, AnswerMedian: m, ConnectMedian: m,
		RSSBefore: m, RSSAfter: m, RSSPerSubscriber: m, BitrateIn: m, BitrateOut: m, ClientCPUUtil: m, UDPDrops: m}
}

// runner holds what every run of an invocation shares.
type runner struct {
	o      *Options
	pubAPI *webrtc.API
	// osNet is the network the subscribers' arrival-noting sockets are
	// made on (see arrivals).
	osNet *stdnet.Net
	prog  *Progress
	// versions is each target's server version, as its last server told.
	versions map[string]string
}

// run is one run: a fresh server, the plan's publishers and subscribers,
// warm-up, the measured window, teardown, then the floor on the server's
// CPU.
func (r *runner) run(ctx context.Context, tgt Target, plan Plan, label string, n int) RunResult {
	res, err := r.measure(ctx, tgt, plan, label, n)
	if err != nil {
		return failedRun(n, err)
	}
	if res.FloorBytes > 0 && r.o.FloorCommand != nil {
		r.prog.Stage(label, "floor")
		f, err := MeasureFloor(ctx, r.o.FloorCommand, r.o.ServerCPU, res.FloorBytes, r.o.FloorTime)
		if err != nil {
			return failedRun(n, err)
		}
		res.Floor = Figure(f.PerDatagram)
		if res.CPUPerPacket.Valid() {
			res.FloorRatio = res.CPUPerPacket / res.Floor
		}
	}
	return res
}

func (r *runner) measure(ctx context.Context, tgt Target, plan Plan, label string, n int) (res RunResult, err error) {
	o := r.o
	r.prog.Stage(label, "starting "+tgt.Name())
	srv, err := tgt.Start(ctx)
	if err != nil {
		return res, err
	}
	r.versions[tgt.Name()] = srv.Version()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}
	win := newWindow()
	var pubs []*publisher
	var subs []*subscriber
	closed := false
	defer func() {
		if !closed {
			r.prog.Stage(label, "closing")
			closeAll(ctx, hc, srv.Shared(), pubs, subs)
		}
		hc.CloseIdleConnections()
		if cerr := srv.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	pid := ""
	if srv.PID() > 0 {
		pid = strconv.Itoa(srv.PID())
	}

	r.prog.Stage(label, fmt.Sprintf("publishing %d", len(plan.Publishers)))
	published := make([]Published, len(plan.Publishers))
	for i, ps := range plan.Publishers {
		req, err := srv.Publish(ps)
		if err != nil {
			return res, err
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p, err := publish(pctx, r.pubAPI, hc, ps, o.Load, win, req)
		cancel()
		if err != nil {
			return res, err
		}
		pubs = append(pubs, p)
		published[i] = Published{Spec: ps, Resource: p.sess.resource, ID: p.sess.resourceID()}
	}
	if err := sleep(ctx, o.Settle); err != nil {
		return res, err
	}
	rssBefore := readRSS(pid)

	subs, err = r.join(ctx, srv, hc, plan.Subscribers, published, win, label)
	if err != nil {
		return res, err
	}
	total := len(plan.Subscribers)

	r.prog.Stage(label, fmt.Sprintf("warming up %s", o.Warmup))
	if err := sleep(ctx, o.Warmup); err != nil {
		return res, err
	}

	// The window: packets stamped inside it count, wherever they are
	// when it closes; CPU is read at its edges.
	t0 := time.Now()
	win.set(t0.UnixNano(), t0.Add(o.Duration).UnixNano())
	cpu0, cpuErr0 := procCPU(pid)
	self0, selfErr0 := ProcCPU("self")
	drops0, dropsErr0 := UDPDrops()
	tick := time.NewTicker(time.Second)
	for done := false; !done; {
		el := time.Since(t0)
		r.prog.Count(label, "measuring", int(el/time.Second), int(o.Duration/time.Second))
		left := o.Duration - el
		if left <= 0 {
			break
		}
		select {
		case <-tick.C:
		case <-time.After(left):
			done = true
		case <-ctx.Done():
			tick.Stop()
			return res, ctx.Err()
		}
	}
	tick.Stop()
	cpu1, cpuErr1 := procCPU(pid)
	self1, selfErr1 := ProcCPU("self")
	drops1, dropsErr1 := UDPDrops()
	elapsed := time.Since(t0)
	rssAfter := readRSS(pid)
	// Let what was sent before the window closed arrive.
	if err := sleep(ctx, o.Drain); err != nil {
		return res, err
	}
	// Closing ends the read loops, whose counts tally then reads.
	r.prog.Stage(label, "closing")
	closeAll(ctx, hc, srv.Shared(), pubs, subs)
	closed = true
	res = r.tally(pubs, subs, o.Duration)
	res.Run = n
	if cpuErr0 == nil && cpuErr1 == nil && pid != "" {
		c := (cpu1 - cpu0).Seconds()
		res.ServerCPUSeconds = Figure(c)
		res.ServerCPUUtil = Figure(c / elapsed.Seconds())
		if res.PacketsReceived > 0 {
			res.CPUPerPacket = Figure(c * 1e6 / float64(res.PacketsReceived))
		}
	}
	if selfErr0 == nil && selfErr1 == nil {
		res.ClientCPUUtil = Figure((self1 - self0).Seconds() / elapsed.Seconds())
	}
	if dropsErr0 == nil && dropsErr1 == nil {
		res.UDPDrops = Figure(drops1 - drops0)
	}
	res.RSSBefore, res.RSSAfter = rssBefore, rssAfter
	if rssBefore.Valid() && rssAfter.Valid() && total > 0 {
		res.RSSPerSubscriber = (rssAfter - rssBefore) / Figure(total)
	}
	return res, nil
}

// join connects the subscriber connections, JoinConcurrency at a time,
// and returns those that connected. The first failure stops the joining
// and is returned, with how many failed.
func (r *runner) join(ctx context.Context, srv Server, hc *http.Client, specs []SubscriberSpec, published []Published, win *window, label string) ([]*subscriber, error) {
	var (
		mu             sync.Mutex
		subs           []*subscriber
		joined, failed int
		firstErr       error
	)
	jobs := make(chan SubscriberSpec)
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range max(1, r.o.JoinConcurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for spec := range jobs {
				req, err := srv.Subscribe(spec, published[spec.Publisher])
				var s *subscriber
				if err == nil {
					sctx, cancelJoin := context.WithTimeout(jctx, 30*time.Second)
					s, err = subscribe(sctx, r.osNet, hc, spec, win, req, r.o.Load.Feedback)
					cancelJoin()
				}
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					subs = append(subs, s)
					joined++
				}
				done := joined
				mu.Unlock()
				r.prog.Count(label, "joining", done, len(specs))
			}
		}()
	}
	r.prog.Count(label, "joining", 0, len(specs))
feed:
	for _, spec := range specs {
		select {
		case jobs <- spec:
		case <-jctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return subs, fmt.Errorf("%d of %d subscriber connections failed; the first: %w", failed, len(specs), firstErr)
	}
	return subs, ctx.Err()
}

// tally adds up what the publishers sent and the subscribers received in
// the window, once every connection is closed.
func (r *runner) tally(pubs []*publisher, subs []*subscriber, d time.Duration) RunResult {
	res := RunResult{WindowSeconds: d.Seconds()}
	byIndex := make(map[int]*publisher, len(pubs))
	var bytesIn int64
	for _, p := range pubs {
		byIndex[p.spec.Index] = p
		res.PacketsSent += p.aSent.packets.Load()
		bytesIn += p.aSent.bytes.Load()
		for _, l := range p.layers {
			res.PacketsSent += l.sent.packets.Load()
			bytesIn += l.sent.bytes.Load()
		}
	}
	var bytesOut, rtpBytes int64
	var delay, readDelay Histogram
	var setups, answers, connects []time.Duration
	var expected, received [2]int64 // by kind: audio, video
	worst := math.Inf(1)
	for _, s := range subs {
		p := byIndex[s.spec.Publisher]
		var exp, got int64
		if s.spec.Audio {
			e := p.aSent.packets.Load()
			expected[0] += e
			exp += e
			if at := s.track(false); at != nil {
				received[0] += at.packets
				got += at.packets
			}
		}
		if s.spec.Video {
			top := p.layers[len(p.layers)-1]
			vt := s.track(true)
			var e int64
			switch {
			case !r.o.Load.Simulcast, vt == nil:
				// Without simulcast, or when nothing arrived, the
				// (top) layer's packets were due.
				e = top.sent.packets.Load()
			default:
				// The layer a subscriber gets may change; what it
				// missed is the gaps in the counters of each layer
				// it was on.
				e = vt.packets + vt.gaps
			}
			expected[1] += e
			exp += e
			if vt != nil {
				received[1] += vt.packets
				got += vt.packets
			}
		}
		if exp > 0 {
			worst = math.Min(worst, float64(got)/float64(exp))
		}
		for _, t := range s.tracks {
			bytesOut += t.bytes
			rtpBytes += t.rtpBytes
			delay.Merge(&t.delay)
			readDelay.Merge(&t.readDelay)
		}
		answers = append(answers, s.sess.answeredAt.Sub(s.sess.offeredAt))
		connects = append(connects, s.sess.connectedAt.Sub(s.sess.offeredAt))
		first := int64(0)
		if s.spec.Video {
			if vt := s.track(true); vt != nil {
				first = vt.firstKeyAt
			}
		} else if at := s.track(false); at != nil {
			first = at.firstAt
		}
		if first != 0 {
			setups = append(setups, time.Duration(first-s.sess.offeredAt.UnixNano()))
		} else {
			// Never started: the whole run is its setup time.
			setups = append(setups, time.Since(s.sess.offeredAt))
		}
	}
	res.PacketsExpected = expected[0] + expected[1]
	res.PacketsReceived = received[0] + received[1]
	share := func(got, exp int64) Figure {
		if exp == 0 {
			return Missing
		}
		return Figure(float64(got) / float64(exp))
	}
	res.Delivered = share(res.PacketsReceived, res.PacketsExpected)
	res.DeliveredAudio = share(received[0], expected[0])
	res.DeliveredVideo = share(received[1], expected[1])
	res.WorstDelivered = Missing
	if !math.IsInf(worst, 1) {
		res.WorstDelivered = Figure(worst)
	}
	res.DelayP50, res.DelayP99, res.ReadDelayP50, res.ReadDelayP99 = Missing, Missing, Missing, Missing
	if delay.Count() > 0 {
		res.DelayP50 = ms(delay.Quantile(0.50))
		res.DelayP99 = ms(delay.Quantile(0.99))
	}
	if readDelay.Count() > 0 {
		res.ReadDelayP50 = ms(readDelay.Quantile(0.50))
		res.ReadDelayP99 = ms(readDelay.Quantile(0.99))
	}
	res.SetupMedian, res.SetupMax, res.AnswerMedian, res.ConnectMedian = Missing, Missing, Missing, Missing
	if len(setups) > 0 {
		res.SetupMedian = ms(medianDuration(setups))
		res.SetupMax = ms(maxDuration(setups))
		res.AnswerMedian = ms(medianDuration(answers))
		res.ConnectMedian = ms(medianDuration(connects))
	}
	res.BitrateIn = Figure(float64(bytesIn) * 8 / d.Seconds())
	res.BitrateOut = Figure(float64(bytesOut) * 8 / d.Seconds())
	if res.PacketsReceived > 0 {
		res.FloorBytes = int(math.Round(float64(rtpBytes) / float64(res.PacketsReceived)))
	}
	res.ServerCPUSeconds, res.ServerCPUUtil, res.CPUPerPacket = Missing, Missing, Missing
	res.Floor, res.FloorRatio, res.ClientCPUUtil = Missing, Missing, Missing
	res.RSSBefore, res.RSSAfter, res.RSSPerSubscriber = Missing, Missing, Missing
	res.UDPDrops = Missing
	return res
}

func ms(d time.Duration) Figure { return Figure(float64(d) / float64(time.Millisecond)) }

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func procCPU(pid string) (time.Duration, error) {
	if pid == "" {
		return 0, errors.New("bench: no server process")
	}
	return ProcCPU(pid)
}

func readRSS(pid string) Figure {
	if pid == "" {
		return Missing
	}
	b, err := ProcRSS(pid)
	if err != nil {
		return Missing
	}
	return Figure(b)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeAll closes every connection, several at a time, DELETEing the
// sessions first on a server that outlives the run.
func closeAll(ctx context.Context, hc *http.Client, deleteSessions bool, pubs []*publisher, subs []*subscriber) {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	do := func(s *session, closeFn func()) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if deleteSessions && s != nil && s.resource != "" {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				_ = deleteResource(dctx, hc, s)
				cancel()
			}
			closeFn()
		}()
	}
	for _, s := range subs {
		do(s.sess, s.close)
	}
	wg.Wait()
	for _, p := range pubs {
		do(p.sess, p.close)
	}
	wg.Wait()
}
