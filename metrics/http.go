package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpMetrics count HTTP requests by route, method and status, and time
// them by route and method.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help: "Time to answer HTTP requests, by route and method. A websocket's time is its whole session.",
			// 1 ms to about 16 s: a WHIP offer waits for ICE gathering.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"route", "method"}),
	}
}

// Instrument counts and times the requests h serves under the given
// route name. Route names are a fixed set chosen by the caller, never a
// request's path, so that room names and session IDs never become
// label values; methods and codes are reduced to the standard ones.
func (m *Metrics) Instrument(route string, h http.Handler) http.Handler {
	labels := prometheus.Labels{"route": route}
	return promhttp.InstrumentHandlerDuration(m.http.duration.MustCurryWith(labels),
		promhttp.InstrumentHandlerCounter(m.http.requests.MustCurryWith(labels), h))
}
