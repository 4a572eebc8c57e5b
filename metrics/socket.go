package metrics

import "github.com/prometheus/client_golang/prometheus"

// Socket are the counts of the media socket's batched writes, and of
// the RTCP its direct receive path read (see rtc.SocketStats).
type Socket struct {
	Batches, Datagrams, Dropped uint64
	RTCPTaken, RTCPReplays      uint64
}

// socketCollector reads the media socket's counts on each scrape.
type socketCollector struct {
	read                        func() Socket
	batches, datagrams, dropped *prometheus.Desc
	rtcpTaken, rtcpReplays      *prometheus.Desc
}

func newSocketCollector(read func() Socket) *socketCollector {
	name := func(n string) string { return prometheus.BuildFQName(namespace, "media_socket", n) }
	return &socketCollector{
		read:        read,
		batches:     prometheus.NewDesc(name("send_calls_total"), "System calls that sent media datagrams (one sendmmsg carries a batch).", nil, nil),
		datagrams:   prometheus.NewDesc(name("datagrams_sent_total"), "Media datagrams handed to the kernel; divided by send_calls_total, the mean batch.", nil, nil),
		dropped:     prometheus.NewDesc(name("datagrams_dropped_total"), "Media datagrams the kernel refused (an unreachable address, say).", nil, nil),
		rtcpTaken:   prometheus.NewDesc(name("rtcp_taken_total"), "SRTCP packets (subscribers' feedback) read straight off the socket, bypassing pion's receive path.", nil, nil),
		rtcpReplays: prometheus.NewDesc(name("rtcp_replays_total"), "SRTCP packets dropped as replays of one already read.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *socketCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.batches
	ch <- c.datagrams
	ch <- c.dropped
	ch <- c.rtcpTaken
	ch <- c.rtcpReplays
}

// Collect implements prometheus.Collector.
func (c *socketCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	ch <- prometheus.MustNewConstMetric(c.batches, prometheus.CounterValue, float64(s.Batches))
	ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(s.Datagrams))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(s.Dropped))
	ch <- prometheus.MustNewConstMetric(c.rtcpTaken, prometheus.CounterValue, float64(s.RTCPTaken))
	ch <- prometheus.MustNewConstMetric(c.rtcpReplays, prometheus.CounterValue, float64(s.RTCPReplays))
}
