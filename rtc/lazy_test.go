package rtc

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
)

// loopCounter stands for pion's receiving interceptors: BindRTCPWriter
// is where they start their goroutine.
type loopCounter struct {
	interceptor.NoOp
	writers []interceptor.RTCPWriter
	remote  int
}

func (l *loopCounter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.writers = append(l.writers, w)
	return w
}

func (l *loopCounter) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	l.remote++
	return r
}

func TestReceiveOnlyStartsWithTheFirstRemoteStream(t *testing.T) {
	inner := &loopCounter{}
	r := &receiveOnly{Interceptor: inner}
	var written int
	w := interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) {
		written++
		return 0, nil
	})
	r.BindRTCPWriter(w)
	r.BindLocalStream(&interceptor.StreamInfo{SSRC: 1}, nil)
	if len(inner.writers) != 0 {
		t.Fatal("started on a connection that only sends")
	}
	r.BindRemoteStream(&interceptor.StreamInfo{SSRC: 2}, nil)
	r.BindRemoteStream(&interceptor.StreamInfo{SSRC: 3}, nil)
	if len(inner.writers) != 1 || inner.remote != 2 {
		t.Fatalf("after two remote streams: started %d times, %d streams bound; want 1 and 2", len(inner.writers), inner.remote)
	}
	// It writes on the chain's writer it was given.
	_, _ = inner.writers[0].Write(nil, nil)
	if written != 1 {
		t.Fatal("the kept writer is not the chain's")
	}
}

func TestReceiveOnlyClosesUnstarted(t *testing.T) {
	// pion's NACK generator, never started, closes at once.
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	i, err := receiveOnlyFactory{gen}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	i.BindRTCPWriter(interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { return 0, nil }))
	if err := i.Close(); err != nil {
		t.Fatal(err)
	}
}
