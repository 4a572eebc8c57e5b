package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wire records what a subscriber's connection would send: the bytes of
// every RTP packet, header included.
type wire struct {
	mu             sync.Mutex
	packets, bytes int
}

func (w *wire) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.packets++
	w.bytes += h.MarshalSize() + len(payload)
	return len(payload), nil
}

type rtcpSink struct {
	mu   sync.Mutex
	plis int
}

func (s *rtcpSink) WriteRTCP(pkts []rtcp.Packet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pkts {
		if _, ok := p.(*rtcp.PictureLossIndication); ok {
			s.plis++
		}
	}
	return nil
}

type estimate uint64

func (e estimate) TargetBitrate() uint64 { return uint64(e) }

// vp8Keyframe is an RTP packet carrying (the start of) a VP8 keyframe.
func vp8Keyframe(t *testing.T, seq uint16) []byte {
	t.Helper()
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 0x1234},
		Payload: append([]byte{0x10, 0x00, 0x9d, 0x01, 0x2a}, make([]byte, 200)...),
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sample is one metric's value, found by name and labels.
func sample(t *testing.T, fams []*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			return m
		}
	}
	t.Fatalf("no %s%v among the metrics", name, labels)
	return nil
}

func value(t *testing.T, fams []*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := sample(t, fams, name, labels)
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

// The collector reports what a real SFU did with real packets.
func TestCollectorReadsTheSFU(t *testing.T) {
	sfu := focus.New(focus.Options{})
	defer sfu.Close()
	pub, err := sfu.Join("whip:room", focus.ParticipantInfo{Identity: "camera"})
	if err != nil {
		t.Fatal(err)
	}
	upstream := &rtcpSink{}
	up, err := pub.Publish(focus.TrackInfo{Kind: focus.KindVideo, Codec: focus.Codec{MimeType: "video/VP8", ClockRate: 90000}}, upstream)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := sfu.Join("whip:room", focus.ParticipantInfo{Identity: "viewer", Role: focus.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	viewer.SetBandwidthEstimator(estimate(1_200_000))
	down, err := viewer.Subscribe(up)
	if err != nil {
		t.Fatal(err)
	}
	w := &wire{}
	down.Bind(focus.Binding{SSRC: 5, PayloadType: 96, Writer: w})

	const n = 30
	in := 0
	for i := 0; i < n; i++ {
		buf := vp8Keyframe(t, uint16(100+i))
		in += len(buf)
		if err := up.HandleRTP(0, buf); err != nil {
			t.Fatal(err)
		}
	}
	down.HandleRTCP([]rtcp.Packet{
		&rtcp.PictureLossIndication{},
		&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: 1, LostPackets: 0b101}}},
	})

	m := metrics.New(metrics.Options{SFU: sfu, ToDevice: func() metrics.ToDevice {
		return metrics.ToDevice{Handled: 7, Failed: 2, Ignored: 1, Sent: 9, SendFailed: 1}
	}, Socket: func() metrics.Socket {
		return metrics.Socket{Batches: 3, Datagrams: 250, Dropped: 1, RTCPTaken: 40, RTCPReplays: 2}
	}})
	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	video := map[string]string{"kind": "video"}
	w.mu.Lock()
	outPackets, outBytes := w.packets, w.bytes
	w.mu.Unlock()
	upstream.mu.Lock()
	plis := upstream.plis
	upstream.mu.Unlock()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"focus_conferences", nil, 1},
		{"focus_participants", nil, 2},
		{"focus_published_tracks", video, 1},
		{"focus_published_tracks", map[string]string{"kind": "audio"}, 0},
		{"focus_subscribed_tracks", video, 1},
		{"focus_rtp_packets_in_total", video, n},
		{"focus_rtp_bytes_in_total", video, float64(in)},
		{"focus_rtp_packets_out_total", video, float64(outPackets)},
		{"focus_rtp_bytes_out_total", video, float64(outBytes)},
		{"focus_plis_received_total", nil, 1},
		{"focus_plis_sent_total", nil, float64(plis)},
		{"focus_nacks_received_total", nil, 1},
		{"focus_nacked_packets_total", nil, 3},
		{"focus_layer_switches_total", nil, 0},
		{"focus_matrix_to_device_received_total", map[string]string{"result": "handled"}, 7},
		{"focus_matrix_to_device_received_total", map[string]string{"result": "failed"}, 2},
		{"focus_matrix_to_device_received_total", map[string]string{"result": "ignored"}, 1},
		{"focus_matrix_to_device_sent_total", map[string]string{"result": "ok"}, 9},
		{"focus_matrix_to_device_sent_total", map[string]string{"result": "failed"}, 1},
		{"focus_media_socket_send_calls_total", nil, 3},
		{"focus_media_socket_datagrams_sent_total", nil, 250},
		{"focus_media_socket_datagrams_dropped_total", nil, 1},
		{"focus_media_socket_rtcp_taken_total", nil, 40},
		{"focus_media_socket_rtcp_replays_total", nil, 2},
	} {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if outPackets != n || plis == 0 {
		t.Errorf("the subscriber got %d packets and the publisher %d PLIs; want %d and some", outPackets, plis, n)
	}
	h := sample(t, fams, "focus_bandwidth_estimate_bits_per_second", nil).GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 1_200_000 {
		t.Errorf("estimate histogram: %d samples summing to %v, want 1 of 1200000", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		if want := b.GetUpperBound() >= 1_200_000; (b.GetCumulativeCount() == 1) != want {
			t.Errorf("estimate bucket le=%v holds %d", b.GetUpperBound(), b.GetCumulativeCount())
		}
	}
	if v := value(t, fams, "go_goroutines", nil); v < 1 {
		t.Errorf("go_goroutines = %v", v)
	}
	if runtime.GOOS == "linux" {
		if v := value(t, fams, "process_open_fds", nil); v < 1 {
			t.Errorf("process_open_fds = %v", v)
		}
	}
}

// Without a Matrix front-end there are no to-device metrics, rather than
// zeros that would read as an idle one.
func TestNoToDeviceWithoutMatrix(t *testing.T) {
	fams, err := metrics.New(metrics.Options{}).Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "focus_matrix_") || strings.HasPrefix(f.GetName(), "focus_rtp_") {
			t.Errorf("%s exported without its source", f.GetName())
		}
	}
}

// Requests are counted by the route name given, never by their path.
func TestInstrumentLabelsByRoute(t *testing.T) {
	m := metrics.New(metrics.Options{})
	mux := http.NewServeMux()
	mux.Handle("/whip/{room}", m.Instrument("whip", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "no", http.StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})))
	mux.Handle("/metrics", m.Instrument("metrics", m.Handler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, method := range []string{http.MethodPost, http.MethodPost, http.MethodGet, "BREW"} {
		req, err := http.NewRequest(method, srv.URL+"/whip/secret-room-name", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"route": "whip", "method": "post", "code": "201"}, 2},
		{map[string]string{"route": "whip", "method": "get", "code": "405"}, 1},
		{map[string]string{"route": "whip", "method": "unknown", "code": "405"}, 1},
		{map[string]string{"route": "metrics", "method": "get", "code": "200"}, 1},
	} {
		if got := value(t, fams, "focus_http_requests_total", c.labels); got != c.want {
			t.Errorf("focus_http_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	d := sample(t, fams, "focus_http_request_duration_seconds", map[string]string{"route": "whip", "method": "post"}).GetHistogram()
	if d.GetSampleCount() != 2 {
		t.Errorf("whip POST timed %d times, want 2", d.GetSampleCount())
	}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if strings.Contains(l.GetValue(), "secret") || strings.Contains(l.GetValue(), "/") {
					t.Errorf("%s has label %s=%q from a path", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// The cascade's figures are exported when the mesh is on, and only then.
func TestCascadeMetrics(t *testing.T) {
	m := metrics.New(metrics.Options{Cascade: func() metrics.Cascade {
		return metrics.Cascade{
			Nodes:             map[string]int{"alive": 2, "dead": 1},
			Trunks:            map[string]int{"pull": 1, "export": 2},
			Subscriptions:     map[string]int{"pull": 2, "export": 5},
			PacketsIn:         100,
			PacketsOut:        250,
			BytesIn:           1000,
			BytesOut:          2500,
			HeartbeatFailures: 1,
			Refused:           3,
		}
	}})
	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"focus_mesh_nodes", map[string]string{"state": "alive"}, 2},
		{"focus_mesh_nodes", map[string]string{"state": "dead"}, 1},
		{"focus_cascade_trunks", map[string]string{"direction": "pull"}, 1},
		{"focus_cascade_trunks", map[string]string{"direction": "export"}, 2},
		{"focus_cascade_trunk_subscriptions", map[string]string{"direction": "pull"}, 2},
		{"focus_cascade_trunk_subscriptions", map[string]string{"direction": "export"}, 5},
		{"focus_cascade_trunk_packets_total", map[string]string{"direction": "in"}, 100},
		{"focus_cascade_trunk_packets_total", map[string]string{"direction": "out"}, 250},
		{"focus_cascade_trunk_bytes_total", map[string]string{"direction": "in"}, 1000},
		{"focus_cascade_trunk_bytes_total", map[string]string{"direction": "out"}, 2500},
		{"focus_cascade_trunk_heartbeat_failures_total", nil, 1},
		{"focus_cascade_trunk_requests_refused_total", nil, 3},
	} {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	fams, err = metrics.New(metrics.Options{}).Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "focus_cascade_") || strings.HasPrefix(f.GetName(), "focus_mesh_") {
			t.Errorf("%s exported without a mesh", f.GetName())
		}
	}
}
