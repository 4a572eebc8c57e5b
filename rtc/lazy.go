package rtc

import (
	"sync"

	"github.com/pion/interceptor"
)

// receiveOnly wraps an interceptor that serves only streams the focus
// receives (pion's NACK generator, receiver reports and transport-wide
// feedback) and starts its goroutine when the first such stream is bound,
// not when the connection is made. Each of those interceptors starts a
// goroutine with a ticker (every 100 ms for NACKs and feedback) in
// BindRTCPWriter, on every connection; a subscriber's connection
// receives nothing, and at 100 subscribers that was 300 idle goroutines
// and 2000 timer wake-ups a second.
type receiveOnly struct {
	interceptor.Interceptor

	mu      sync.Mutex
	writer  interceptor.RTCPWriter // the chain's writer, kept until needed
	started bool
}

// receiveOnlyFactory wraps each interceptor its Factory makes.
type receiveOnlyFactory struct{ interceptor.Factory }

// NewInterceptor implements interceptor.Factory.
func (f receiveOnlyFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := f.Factory.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &receiveOnly{Interceptor: i}, nil
}

// BindRTCPWriter implements interceptor.Interceptor: the writer is kept
// for the first remote stream. The wrapped interceptors return it
// unchanged, so the chain after this one is the same either way.
func (r *receiveOnly) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return r.Interceptor.BindRTCPWriter(w)
	}
	r.writer = w
	return w
}

// BindRemoteStream implements interceptor.Interceptor.
func (r *receiveOnly) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	r.mu.Lock()
	if !r.started && r.writer != nil {
		r.started = true
		r.Interceptor.BindRTCPWriter(r.writer)
	}
	r.mu.Unlock()
	return r.Interceptor.BindRemoteStream(info, reader)
}
