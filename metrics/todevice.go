package metrics

import "github.com/prometheus/client_golang/prometheus"

// toDeviceCollector reads the Matrix front-end's counts on each scrape.
type toDeviceCollector struct {
	read           func() ToDevice
	received, sent *prometheus.Desc
}

func newToDeviceCollector(read func() ToDevice) *toDeviceCollector {
	return &toDeviceCollector{
		read: read,
		received: prometheus.NewDesc(prometheus.BuildFQName(namespace, "matrix", "to_device_received_total"),
			"To-device messages received, by what became of them: handled (m.call.* taken), "+
				"failed (malformed, undecryptable or not acceptable), ignored (other types).",
			[]string{"result"}, nil),
		sent: prometheus.NewDesc(prometheus.BuildFQName(namespace, "matrix", "to_device_sent_total"),
			"To-device messages sent, by whether the homeserver took them (ok) or not (failed).",
			[]string{"result"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *toDeviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.received
	ch <- c.sent
}

// Collect implements prometheus.Collector.
func (c *toDeviceCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.read()
	for _, v := range []struct {
		desc   *prometheus.Desc
		n      uint64
		result string
	}{
		{c.received, t.Handled, "handled"},
		{c.received, t.Failed, "failed"},
		{c.received, t.Ignored, "ignored"},
		{c.sent, t.Sent, "ok"},
		{c.sent, t.SendFailed, "failed"},
	} {
		ch <- prometheus.MustNewConstMetric(v.desc, prometheus.CounterValue, float64(v.n), v.result)
	}
}
