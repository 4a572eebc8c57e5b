// Package metrics exposes a focus to Prometheus: the SFU core's gauges
// and counters, the Matrix front-end's to-device counts, HTTP requests by
// route, and the Go runtime and process collectors.
//
// Nothing here runs per packet. The core counts in fields its forwarding
// path owns already, and the collector reads them through
// focus.SFU.Stats when Prometheus scrapes.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/focus-sfu/focus/focus"
)

// namespace prefixes every metric of the focus's own.
const namespace = "focus"

// Options say what to collect.
type Options struct {
	// SFU is the core whose Stats are collected on every scrape.
	SFU *focus.SFU
	// ToDevice reads the Matrix front-end's to-device counts; nil when
	// the front-end is off, and then its metrics are left out.
	ToDevice func() ToDevice
	// Socket reads the media socket's counts; nil leaves them out.
	Socket func() Socket
	// Cascade reads the mesh's and trunks' figures; nil when the mesh is
	// off, and then its metrics are left out.
	Cascade func() Cascade
}

// ToDevice are the to-device message counts of the Matrix front-end
// (see matrix.ToDeviceStats).
type ToDevice struct {
	Handled, Failed, Ignored uint64
	Sent, SendFailed         uint64
}

// Metrics is one registry with everything a focus exports.
type Metrics struct {
	reg  *prometheus.Registry
	http *httpMetrics
}

// New registers the collectors. It starts nothing: the collectors run on
// the goroutine of each scrape.
func New(opts Options) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if opts.SFU != nil {
		reg.MustRegister(newSFUCollector(opts.SFU))
	}
	if opts.ToDevice != nil {
		reg.MustRegister(newToDeviceCollector(opts.ToDevice))
	}
	if opts.Socket != nil {
		reg.MustRegister(newSocketCollector(opts.Socket))
	}
	if opts.Cascade != nil {
		reg.MustRegister(newCascadeCollector(opts.Cascade))
	}
	h := newHTTPMetrics()
	reg.MustRegister(h.requests, h.duration)
	return &Metrics{reg: reg, http: h}
}

// Handler serves the metrics in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: true})
}

// Gatherer gives tests and embedders the registry's metrics directly.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }
