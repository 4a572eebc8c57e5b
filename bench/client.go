package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/transport/v4"
	"github.com/pion/webrtc/v4"
)

// Payload types the generator offers; the server may answer with others.
const (
	ptVP8  = 96
	ptOpus = 111
)

// Feedback is what congestion feedback the subscribers send.
type Feedback string

// The feedback modes.
const (
	// FeedbackTWCC is what a browser sends: transport-wide congestion
	// control feedback on every packet, from which the server estimates
	// each subscriber's bandwidth (and may pause video that does not fit).
	FeedbackTWCC Feedback = "twcc"
	// FeedbackREMB is an old or minimal client: no transport-wide
	// feedback, a REMB of remb bit/s every second instead, which leaves
	// the server's estimate at that.
	FeedbackREMB Feedback = "remb"
)

// rembBitrate is the receiver estimate FeedbackREMB subscribers report:
// far above anything the bench sends, so nothing is held for bandwidth.
const rembBitrate = 100_000_000

// ParseFeedback checks a feedback mode's name.
func ParseFeedback(s string) (Feedback, error) {
	switch f := Feedback(s); f {
	case FeedbackTWCC, FeedbackREMB:
		return f, nil
	}
	return "", fmt.Errorf("bench: unknown feedback %q (twcc or remb)", s)
}

// newAPI builds the pion API the generator's connections are made from:
// publishers' when publisher is set, otherwise subscribers'. It offers
// what a browser's connection brings, minus what an SFU never sees: VP8
// and Opus with NACK, PLI and FIR; sender and receiver reports; NACK
// generation and answering; on what publishers send, transport-wide
// sequence numbers and the MID and RID extensions simulcast needs; from
// subscribers, transport-wide feedback (FeedbackTWCC) or REMB only
// (FeedbackREMB, sent by the subscriber itself). pion's stats interceptor,
// which clones every packet's header, is left out so that the generator
// spends its CPU on the load. ICE gathers loopback host candidates only,
// through n (nil: the operating system's network).
func newAPI(publisher bool, fb Feedback, n transport.Net) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	videoFB := []webrtc.RTCPFeedback{
		{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
		{Type: webrtc.TypeRTCPFBNACK},
		{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	}
	if !publisher && fb == FeedbackREMB {
		videoFB = append(videoFB, webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBGoogREMB})
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB},
		PayloadType:        ptVP8,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("bench: register VP8: %w", err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: ptOpus,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("bench: register Opus: %w", err)
	}
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	reg := &interceptor.Registry{}
	// pion's own logs would only repeat teardown noise (writes on closed
	// pipes) on the progress line.
	if err := webrtc.ConfigureNackWithOptions(me, reg,
		[]nack.GeneratorOption{nack.WithGeneratorLoggerFactory(quiet)}, nack.WithResponderLoggerFactory(quiet)); err != nil {
		return nil, fmt.Errorf("bench: nack: %w", err)
	}
	if err := webrtc.ConfigureRTCPReportsWithOptions(reg,
		[]report.ReceiverOption{report.WithReceiverLoggerFactory(quiet)}, report.WithSenderLoggerFactory(quiet)); err != nil {
		return nil, fmt.Errorf("bench: reports: %w", err)
	}
	if publisher {
		if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
			return nil, fmt.Errorf("bench: simulcast extensions: %w", err)
		}
		if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
			return nil, fmt.Errorf("bench: twcc extension: %w", err)
		}
	} else if fb == FeedbackTWCC {
		if err := webrtc.ConfigureTWCCSenderWithOptions(me, reg, twcc.WithLoggerFactory(quiet)); err != nil {
			return nil, fmt.Errorf("bench: twcc feedback: %w", err)
		}
	}

	se := webrtc.SettingEngine{LoggerFactory: quiet}
	if n != nil {
		se.SetNet(n)
	}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// Request is where and how to POST one offer: a WHIP or WHEP endpoint, or
// LiveKit's WHIP endpoint with its token and client info.
type Request struct {
	URL    string
	Header http.Header
}

// session is one negotiated connection and the HTTP resource made for it.
type session struct {
	pc *webrtc.PeerConnection
	// resource is the absolute URL of the Location the server answered.
	resource string
	header   http.Header
	// offeredAt is when the offer was POSTed, answeredAt when the answer
	// came, connectedAt when the connection was seen connected.
	offeredAt, answeredAt, connectedAt time.Time
}

// resourceID is the last path element of the session's resource: focus's
// session ID, the value of ?stream= for viewers of this publisher.
func (s *session) resourceID() string {
	u, err := url.Parse(s.resource)
	if err != nil {
		return ""
	}
	return path.Base(u.Path)
}

// negotiate gathers, POSTs the offer to req and applies the answer. It does
// not wait for the connection.
func negotiate(ctx context.Context, hc *http.Client, pc *webrtc.PeerConnection, req Request) (*session, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("bench: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("bench: set offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("bench: gather candidates: %w", ctx.Err())
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		return nil, fmt.Errorf("bench: offer request: %w", err)
	}
	for k, v := range req.Header {
		hreq.Header[k] = v
	}
	hreq.Header.Set("Content-Type", "application/sdp")
	s := &session{pc: pc, header: req.Header, offeredAt: time.Now()}
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("bench: POST %s: %w", req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("bench: POST %s: read answer: %w", req.URL, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("bench: POST %s: status %d: %s", req.URL, resp.StatusCode, firstLine(body))
	}
	s.answeredAt = time.Now()
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("bench: POST %s: 201 without a usable Location: %w", req.URL, err)
	}
	s.resource = loc.String()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return nil, fmt.Errorf("bench: apply answer from %s: %w", req.URL, err)
	}
	return s, nil
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// waitConnected waits until pc is connected.
func waitConnected(ctx context.Context, pc *webrtc.PeerConnection) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		switch st := pc.ConnectionState(); st {
		case webrtc.PeerConnectionStateConnected:
			return nil
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			return fmt.Errorf("bench: connection %s before connecting", st)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("bench: wait for connection (state %s): %w", pc.ConnectionState(), ctx.Err())
		}
	}
}

// deleteResource ends a session on the server.
func deleteResource(ctx context.Context, hc *http.Client, s *session) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.resource, nil)
	if err != nil {
		return fmt.Errorf("bench: delete request: %w", err)
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("bench: DELETE %s: %w", s.resource, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("bench: DELETE %s: status %d", s.resource, resp.StatusCode)
	}
	return nil
}
