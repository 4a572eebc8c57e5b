package focus

// BandwidthEstimator is the send-side estimate of one subscriber's
// connection: how many bits per second the core may send it. The rtc
// package implements it with pion's congestion controller.
type BandwidthEstimator interface {
	TargetBitrate() uint64
}

// SetBandwidthEstimator gives the participant the estimate of the
// connection its subscriptions are sent on. Without one the core
// forwards every wanted layer, as if bandwidth were unlimited.
func (p *Participant) SetBandwidthEstimator(e BandwidthEstimator) {
	p.mu.Lock()
	p.bwe = e
	p.mu.Unlock()
}

func (p *Participant) bandwidthEstimator() BandwidthEstimator {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bwe
}
