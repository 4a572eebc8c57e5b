package metrics

import "github.com/prometheus/client_golang/prometheus"

// Cascade are the mesh's and the trunks' figures (see cascade.Stats and
// mesh.Directory).
type Cascade struct {
	// Nodes counts the mesh's nodes by state (alive, suspect, dead,
	// left), this one included.
	Nodes map[string]int
	// Trunks is the trunks open now, by direction: "pull" (this focus
	// receives) or "export" (this focus sends).
	Trunks map[string]int
	// Subscriptions is the track layers carried by trunks now (a
	// simulcast track counts once per layer), by direction.
	Subscriptions map[string]int
	// Packets and Bytes of RTP carried by trunks, by direction ("in"
	// received on pulling trunks, "out" sent on exporting ones).
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
	// HeartbeatFailures counts trunks ended by a missed heartbeat;
	// Refused counts trunk requests refused (bad signature, replay, ...).
	HeartbeatFailures uint64
	Refused           uint64
}

// cascadeCollector reads the cascade's figures on each scrape.
type cascadeCollector struct {
	read                              func() Cascade
	nodes, trunks, subs               *prometheus.Desc
	packets, bytes, heartbeat, refuse *prometheus.Desc
}

func newCascadeCollector(read func() Cascade) *cascadeCollector {
	name := func(n string) string { return prometheus.BuildFQName(namespace, "cascade", n) }
	return &cascadeCollector{
		read:      read,
		nodes:     prometheus.NewDesc(prometheus.BuildFQName(namespace, "mesh", "nodes"), "Nodes of the mesh by state, this one included.", []string{"state"}, nil),
		trunks:    prometheus.NewDesc(name("trunks"), "Trunks open to other foci, by direction: pull (receiving) or export (sending).", []string{"direction"}, nil),
		subs:      prometheus.NewDesc(name("trunk_subscriptions"), "Track layers carried by trunks (a simulcast track once per layer), by direction.", []string{"direction"}, nil),
		packets:   prometheus.NewDesc(name("trunk_packets_total"), "RTP packets carried by trunks: in (received) or out (sent).", []string{"direction"}, nil),
		bytes:     prometheus.NewDesc(name("trunk_bytes_total"), "RTP bytes carried by trunks: in (received) or out (sent).", []string{"direction"}, nil),
		heartbeat: prometheus.NewDesc(name("trunk_heartbeat_failures_total"), "Trunks ended because their peer stopped answering the heartbeat.", nil, nil),
		refuse:    prometheus.NewDesc(name("trunk_requests_refused_total"), "Trunk requests refused: bad or missing signature, stale, replayed or malformed.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *cascadeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.nodes, c.trunks, c.subs, c.packets, c.bytes, c.heartbeat, c.refuse} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *cascadeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	for state, n := range s.Nodes {
		ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(n), state)
	}
	for _, dir := range []string{"pull", "export"} {
		ch <- prometheus.MustNewConstMetric(c.trunks, prometheus.GaugeValue, float64(s.Trunks[dir]), dir)
		ch <- prometheus.MustNewConstMetric(c.subs, prometheus.GaugeValue, float64(s.Subscriptions[dir]), dir)
	}
	ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(s.PacketsIn), "in")
	ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(s.PacketsOut), "out")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.BytesIn), "in")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.BytesOut), "out")
	ch <- prometheus.MustNewConstMetric(c.heartbeat, prometheus.CounterValue, float64(s.HeartbeatFailures))
	ch <- prometheus.MustNewConstMetric(c.refuse, prometheus.CounterValue, float64(s.Refused))
}
