package server_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/focustest"
	"github.com/focus-sfu/focus/internal/testclient"
	"github.com/focus-sfu/focus/server"
)

// scrape GETs url with the admin token, if any, and returns the status
// and the body.
func scrape(t *testing.T, url, token string) (int, string) {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return get(t, url, h)
}

// metricValue finds the sample of name whose labels include every one
// of labels ("k", "v" pairs) in a text exposition, and returns its value.
func metricValue(t *testing.T, body, name string, labels ...string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series := line[:i]
		match := true
		for j := 0; j+1 < len(labels); j += 2 {
			if !strings.Contains(series, labels[j]+`="`+labels[j+1]+`"`) {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		return v
	}
	t.Fatalf("no %s%v in the scrape:\n%s", name, labels, body)
	return 0
}

// TestMetricsEndpoint publishes and watches through WHIP/WHEP, then
// scrapes /metrics on the admin listener over HTTP: the core's figures and
// the HTTP requests moved, and no room name became a label.
func TestMetricsEndpoint(t *testing.T) {
	const token = "admin-secret"
	f := start(t, func(c *config.Config) {
		c.Admin.Listen = "127.0.0.1:0"
		c.Admin.Token = token
	})
	admin := "http://" + f.Server.AdminAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	pub, err := testclient.Publish(ctx, f.URL, "metrics-room", testclient.PublishOptions{})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer pub.Close()
	view, err := testclient.ViewWhenPublished(ctx, f.URL, "metrics-room", testclient.ViewOptions{})
	if err != nil {
		t.Fatalf("view: %v", err)
	}
	defer view.Close()
	if err := view.WaitPackets(ctx, webrtc.RTPCodecTypeVideo, 20); err != nil {
		t.Fatalf("no video reached the viewer: %v", err)
	}

	if code, _ := scrape(t, admin+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the admin token = %d, want 401", code)
	}
	if code, _ := scrape(t, f.URL+"/metrics", token); code != http.StatusNotFound {
		t.Errorf("/metrics on the main listener with admin.listen set = %d, want 404", code)
	}
	code, body := scrape(t, admin+"/metrics", token)
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d %s", code, body)
	}
	for _, c := range []struct {
		name   string
		labels []string
		ok     func(float64) bool
		want   string
	}{
		{"focus_conferences", nil, func(v float64) bool { return v == 1 }, "1"},
		{"focus_participants", nil, func(v float64) bool { return v == 2 }, "2 (the publisher and the viewer)"},
		{"focus_published_tracks", []string{"kind", "video"}, func(v float64) bool { return v == 1 }, "1"},
		{"focus_published_tracks", []string{"kind", "audio"}, func(v float64) bool { return v == 1 }, "1"},
		{"focus_subscribed_tracks", []string{"kind", "video"}, func(v float64) bool { return v == 1 }, "1"},
		{"focus_rtp_packets_in_total", []string{"kind", "video"}, func(v float64) bool { return v >= 20 }, ">= 20"},
		{"focus_rtp_packets_out_total", []string{"kind", "video"}, func(v float64) bool { return v >= 20 }, ">= 20"},
		{"focus_rtp_bytes_out_total", []string{"kind", "video"}, func(v float64) bool { return v >= 20*1000 }, ">= 20 kB"},
		{"focus_plis_sent_total", nil, func(v float64) bool { return v >= 0 }, "present"},
		{"focus_media_socket_datagrams_sent_total", nil, func(v float64) bool { return v >= 40 }, ">= 40"},
		{"focus_media_socket_send_calls_total", nil, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"focus_media_socket_rtcp_taken_total", nil, func(v float64) bool { return v >= 0 }, "present"},
		{"focus_media_socket_rtcp_replays_total", nil, func(v float64) bool { return v == 0 }, "0"},
		{"focus_http_requests_total", []string{"route", "whip", "method", "post", "code", "201"}, func(v float64) bool { return v == 1 }, "1"},
		{"focus_http_requests_total", []string{"route", "whep", "method", "post", "code", "201"}, func(v float64) bool { return v == 1 }, "1"},
		{"focus_http_requests_total", []string{"route", "metrics", "method", "get", "code", "401"}, func(v float64) bool { return v == 1 }, "1"},
		{"focus_http_request_duration_seconds_count", []string{"route", "whip", "method", "post"}, func(v float64) bool { return v == 1 }, "1"},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 0 }, "> 0"},
	} {
		if v := metricValue(t, body, c.name, c.labels...); !c.ok(v) {
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.want)
		}
	}
	if strings.Contains(body, "metrics-room") {
		t.Error("a room name is in the metrics")
	}
	if strings.Contains(body, "focus_matrix_") {
		t.Error("to-device metrics without a Matrix front-end")
	}
}

// TestPProf: /debug/pprof/ is there only when admin.pprof is on, behind
// the admin token when one is set; /metrics goes with admin.metrics.
func TestPProf(t *testing.T) {
	off := start(t, func(c *config.Config) { c.Admin.Metrics = false })
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/metrics"} {
		if code, _ := scrape(t, off.URL+p, ""); code != http.StatusNotFound {
			t.Errorf("%s with admin.pprof and admin.metrics off = %d, want 404", p, code)
		}
	}

	on := start(t, func(c *config.Config) { c.Admin.PProf = true })
	code, body := scrape(t, on.URL+"/debug/pprof/", "")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ = %d, want the index; body starts %.200q", code, body)
	}
	code, body = scrape(t, on.URL+"/debug/pprof/goroutine?debug=1", "")
	if code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("goroutine profile = %d %.200q", code, body)
	}
	code, body = scrape(t, on.URL+"/metrics", "")
	if code != http.StatusOK || metricValue(t, body, "focus_http_requests_total", "route", "pprof", "code", "200") != 2 {
		t.Errorf("/metrics = %d; pprof requests not counted as route pprof", code)
	}

	guarded := start(t, func(c *config.Config) {
		c.Admin.PProf = true
		c.Admin.Listen = "127.0.0.1:0"
		c.Admin.Token = "adm"
	})
	admin := "http://" + guarded.Server.AdminAddr().String()
	if code, _ := scrape(t, admin+"/debug/pprof/cmdline", ""); code != http.StatusUnauthorized {
		t.Errorf("pprof without the admin token = %d, want 401", code)
	}
	if code, _ := scrape(t, admin+"/debug/pprof/cmdline", "adm"); code != http.StatusOK {
		t.Errorf("pprof with the admin token = %d, want 200", code)
	}
	if code, _ := scrape(t, guarded.URL+"/debug/pprof/cmdline", "adm"); code != http.StatusNotFound {
		t.Errorf("pprof on the main listener with admin.listen set = %d, want 404", code)
	}
}

// A profiler reachable from other hosts without a token is refused at
// start, as an open WHIP listener is.
func TestPProfExposedIsRefused(t *testing.T) {
	cfg := focustest.Config()
	cfg.Admin.Listen = "0.0.0.0:0"
	cfg.Admin.PProf = true
	_, err := server.New(context.Background(), cfg, zerolog.Nop())
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "admin.pprof" {
		t.Fatalf("New = %v, want a config error on admin.pprof", err)
	}
	cfg.Admin.Token = "adm"
	s, err := server.New(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("with admin.token: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
