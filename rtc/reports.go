package rtc

import (
	"github.com/pion/interceptor"

	"github.com/focus-sfu/focus/rtc/bwe"
)

// senderReportsOnly wraps pion's receiver-report interceptor, which
// reads the RTCP of every connection for the sender reports it needs
// (their times go into the receiver reports the focus sends
// publishers). It parses each compound packet into fresh structures to
// look: on a subscriber's connection, whose RTCP is transport-wide
// feedback ten or more times a second and never a sender report, that
// was most of what the focus allocated. Wrapped, it sees only compound
// packets that hold a sender report; and one it cannot parse no longer
// ends the RTCP loop of the track it came on.
type senderReportsOnly struct{ interceptor.Interceptor }

// senderReportsOnlyFactory makes a senderReportsOnly around each
// interceptor its Factory makes.
type senderReportsOnlyFactory struct{ interceptor.Factory }

// NewInterceptor implements interceptor.Factory.
func (f senderReportsOnlyFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := f.Factory.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return senderReportsOnly{i}, nil
}

// BindRTCPReader implements interceptor.Interceptor. Each bound reader
// is read by one goroutine, so the packet in hand can wait in n and attr
// for the wrapped interceptor to read it again.
func (s senderReportsOnly) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	var n int
	var attr interceptor.Attributes
	inner := s.Interceptor.BindRTCPReader(interceptor.RTCPReaderFunc(func([]byte, interceptor.Attributes) (int, interceptor.Attributes, error) {
		return n, attr, nil
	}))
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		var err error
		n, attr, err = r.Read(b, a)
		if err != nil || !hasSenderReport(b[:n]) {
			return n, attr, err
		}
		if _, a, err := inner.Read(b, attr); err == nil && a != nil {
			attr = a
		}
		return n, attr, nil
	})
}

// hasSenderReport reports whether the compound RTCP packet b holds a
// sender report.
func hasSenderReport(b []byte) bool {
	found := false
	_ = bwe.Packets(b, func(pt, _ uint8, _ []byte) {
		found = found || pt == ptSenderReport
	})
	return found
}
