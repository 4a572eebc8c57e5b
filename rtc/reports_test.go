package rtc

import (
	"errors"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestSenderReportsReachReceiverReports: behind the filter, pion's
// receiver-report interceptor still learns the publisher's sender
// reports (the receiver reports it writes carry their time), while
// transport-wide feedback passes without being parsed.
func TestSenderReportsReachReceiverReports(t *testing.T) {
	rr, err := report.NewReceiverInterceptor(report.ReceiverInterval(10 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	i, err := senderReportsOnlyFactory{rr}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	defer i.Close()
	reports := make(chan *rtcp.ReceiverReport, 100)
	i.BindRTCPWriter(interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if r, ok := p.(*rtcp.ReceiverReport); ok {
				select {
				case reports <- r:
				default:
				}
			}
		}
		return 0, nil
	}))
	const ssrc = 7
	media, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: 1}, Payload: []byte{1}}).Marshal()
	rtpIn := i.BindRemoteStream(&interceptor.StreamInfo{SSRC: ssrc, ClockRate: 90000}, interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, media), a, nil
	}))
	buf := make([]byte, 1500)
	if _, _, err := rtpIn.Read(buf, nil); err != nil {
		t.Fatal(err)
	}

	var ntp uint64 = 0x0001_0002_0003_0004
	sr := rtcpBytes(t, &rtcp.SenderReport{SSRC: ssrc, NTPTime: ntp})
	fb := feedbackFor(t, 1, 2, 3)
	next := [][]byte{fb, sr}
	in := i.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		p := next[0]
		next = next[1:]
		return copy(b, p), a, nil
	}))
	for _, want := range [][]byte{fb, sr} {
		n, _, err := in.Read(buf, nil)
		if err != nil || string(buf[:n]) != string(want) {
			t.Fatalf("read %d %v: the packet did not pass through untouched", n, err)
		}
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-reports:
			for _, rep := range r.Reports {
				if rep.SSRC == ssrc && rep.LastSenderReport == uint32(ntp>>16) {
					return
				}
			}
		case <-deadline:
			t.Fatal("no receiver report carried the sender report's time")
		}
	}
}

// failingReader is an interceptor whose RTCP reader fails on every
// packet it is shown, as pion's receiver-report interceptor does on a
// compound it cannot parse.
type failingReader struct {
	interceptor.NoOp
	shown int
}

func (f *failingReader) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		if _, _, err := r.Read(b, a); err != nil {
			return 0, nil, err
		}
		f.shown++
		return 0, nil, errors.New("unparseable")
	})
}

func TestSenderReportsOnlyFilters(t *testing.T) {
	f := &failingReader{}
	s := senderReportsOnly{f}
	var packet []byte
	r := s.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, packet), a, nil
	}))
	buf := make([]byte, 1500)
	for _, tc := range []struct {
		name   string
		packet []byte
		shown  int
	}{
		{"feedback only", feedbackFor(t, 1, 2), 0},
		{"a receiver report", rtcpBytes(t, &rtcp.ReceiverReport{SSRC: 1}), 0},
		{"garbage", []byte{1, 2, 3}, 0},
		{"a sender report the wrapped one cannot parse", rtcpBytes(t, &rtcp.SenderReport{SSRC: 1}, &rtcp.PictureLossIndication{}), 1},
	} {
		f.shown = 0
		packet = tc.packet
		n, _, err := r.Read(buf, nil)
		if err != nil || n != len(tc.packet) {
			t.Fatalf("%s: read %d %v, want the packet and no error", tc.name, n, err)
		}
		if f.shown != tc.shown {
			t.Fatalf("%s: shown to the wrapped interceptor %d times, want %d", tc.name, f.shown, tc.shown)
		}
	}
	packet = feedbackFor(t, 1, 2, 3)
	if a := testing.AllocsPerRun(100, func() { _, _, _ = r.Read(buf, nil) }); a != 0 {
		t.Fatalf("reading feedback allocates %v times", a)
	}
}
