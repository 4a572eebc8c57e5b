package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/focus-sfu/focus/focus"
)

// estimateBuckets are the upper bounds, in bits per second, of the
// bandwidth estimate histogram: 64 kbit/s to 32 Mbit/s.
var estimateBuckets = prometheus.ExponentialBuckets(64_000, 2, 10)

// kinds are the values of the kind label.
var kinds = []struct {
	name string
	get  func(*focus.Stats) *focus.MediaStats
}{
	{"audio", func(s *focus.Stats) *focus.MediaStats { return &s.Audio }},
	{"video", func(s *focus.Stats) *focus.MediaStats { return &s.Video }},
}

// sfuCollector reads the core's snapshot on each scrape.
type sfuCollector struct {
	sfu *focus.SFU

	conferences, participants, paused *prometheus.Desc
	published, subscribed             *prometheus.Desc
	perKind                           []kindMetric
	counters                          []counterMetric
	estimates                         *prometheus.Desc
}

// kindMetric is a counter with a kind label.
type kindMetric struct {
	desc  *prometheus.Desc
	value func(*focus.MediaStats) uint64
}

// counterMetric is a counter without labels.
type counterMetric struct {
	desc  *prometheus.Desc
	value func(*focus.Stats) uint64
}

func newSFUCollector(sfu *focus.SFU) *sfuCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &sfuCollector{
		sfu:          sfu,
		conferences:  desc("conferences", "Conferences with at least one participant."),
		participants: desc("participants", "Participants in all conferences."),
		paused:       desc("subscriptions_paused_for_bandwidth", "Subscriptions held back now for lack of bandwidth."),
		published:    desc("published_tracks", "Tracks being published.", "kind"),
		subscribed:   desc("subscribed_tracks", "Subscriptions: tracks being sent to a subscriber.", "kind"),
		perKind: []kindMetric{
			{desc("rtp_packets_in_total", "RTP packets received from publishers.", "kind"), func(m *focus.MediaStats) uint64 { return m.PacketsIn }},
			{desc("rtp_bytes_in_total", "RTP bytes received from publishers, headers included, after SRTP.", "kind"), func(m *focus.MediaStats) uint64 { return m.BytesIn }},
			{desc("rtp_packets_out_total", "RTP packets forwarded to subscribers, without retransmissions and probe padding.", "kind"), func(m *focus.MediaStats) uint64 { return m.PacketsOut }},
			{desc("rtp_bytes_out_total", "RTP bytes forwarded to subscribers, headers included, before SRTP.", "kind"), func(m *focus.MediaStats) uint64 { return m.BytesOut }},
		},
		counters: []counterMetric{
			{desc("nacks_received_total", "NACK messages received from subscribers."), func(s *focus.Stats) uint64 { return s.NACKs }},
			{desc("nacked_packets_total", "Packets subscribers asked for again in NACKs."), func(s *focus.Stats) uint64 { return s.NACKedPackets }},
			{desc("retransmitted_packets_total", "Packets sent again to subscribers from the packet cache."), func(s *focus.Stats) uint64 { return s.Retransmitted }},
			{desc("retransmits_refused_total", "Retransmissions refused by a subscriber's retransmission budget."), func(s *focus.Stats) uint64 { return s.RetransmitsRefused }},
			{desc("plis_received_total", "Picture loss indications and full intra requests received from subscribers."), func(s *focus.Stats) uint64 { return s.PLIsReceived }},
			{desc("plis_sent_total", "Keyframe requests (PLI) sent to publishers."), func(s *focus.Stats) uint64 { return s.PLIsSent }},
			{desc("layer_switches_total", "Subscriptions moved to another simulcast layer of their track."), func(s *focus.Stats) uint64 { return s.LayerSwitches }},
			{desc("probe_padding_packets_total", "Padding packets sent to probe subscribers' bandwidth."), func(s *focus.Stats) uint64 { return s.PaddingPackets }},
			{desc("probe_padding_bytes_total", "Padding bytes sent to probe subscribers' bandwidth, headers included."), func(s *focus.Stats) uint64 { return s.PaddingBytes }},
		},
		estimates: desc("bandwidth_estimate_bits_per_second",
			"Current send-side bandwidth estimates of the participants whose connection has one. "+
				"A snapshot, not a cumulative histogram: use _sum / _count and histogram_quantile without rate()."),
	}
}

// Describe implements prometheus.Collector.
func (c *sfuCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conferences
	ch <- c.participants
	ch <- c.paused
	ch <- c.published
	ch <- c.subscribed
	for _, k := range c.perKind {
		ch <- k.desc
	}
	for _, m := range c.counters {
		ch <- m.desc
	}
	ch <- c.estimates
}

// Collect implements prometheus.Collector.
func (c *sfuCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sfu.Stats()
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(c.conferences, s.Conferences)
	gauge(c.participants, s.Participants)
	gauge(c.paused, s.PausedForBandwidth)
	for _, k := range kinds {
		m := k.get(&s)
		gauge(c.published, m.Published, k.name)
		gauge(c.subscribed, m.Subscribed, k.name)
		for _, km := range c.perKind {
			ch <- prometheus.MustNewConstMetric(km.desc, prometheus.CounterValue, float64(km.value(m)), k.name)
		}
	}
	for _, m := range c.counters {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.value(&s)))
	}
	count, sum, buckets := estimateHistogram(s.Estimates)
	ch <- prometheus.MustNewConstHistogram(c.estimates, count, sum, buckets)
}

// estimateHistogram sorts estimates into estimateBuckets, cumulatively.
func estimateHistogram(estimates []uint64) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(estimateBuckets))
	for _, b := range estimateBuckets {
		buckets[b] = 0
	}
	for _, e := range estimates {
		v := float64(e)
		sum += v
		for _, b := range estimateBuckets {
			if v <= b {
				buckets[b]++
			}
		}
	}
	return uint64(len(estimates)), sum, buckets
}
