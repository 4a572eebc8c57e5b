package rtc

import (
	"fmt"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBGoogREMB},
	{Type: webrtc.TypeRTCPFBTransportCC},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	{Type: webrtc.TypeRTCPFBNACK},
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
}

// Codecs lists the codecs the focus forwards, in order of preference.
// Payloads are never decoded, so any profile a publisher and a subscriber
// share will do.
var Codecs = []webrtc.RTPCodecParameters{
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}}, PayloadType: 111},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback}, PayloadType: 96},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFeedback}, PayloadType: 98},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=2", RTCPFeedback: videoFeedback}, PayloadType: 100},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: videoFeedback}, PayloadType: 102},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f", RTCPFeedback: videoFeedback}, PayloadType: 127},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: videoFeedback}, PayloadType: 125},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", RTCPFeedback: videoFeedback}, PayloadType: 123},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032", RTCPFeedback: videoFeedback}, PayloadType: 119},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000, SDPFmtpLine: "level-idx=5;profile=0;tier=0", RTCPFeedback: videoFeedback}, PayloadType: 45},
}

// rtxPayloadTypes maps each video payload type in Codecs to that of its
// retransmission format (RFC 4588, "video/rtx" with apt=). The numbers
// follow Chrome's habit of apt+1 where free. RTX lets a publisher
// repair loss on a stream of its own (pion unwraps it on receive, so the
// core sees the original packets), and lets the focus resend to a
// subscriber without the receiver counting the resend as media.
var rtxPayloadTypes = map[webrtc.PayloadType]webrtc.PayloadType{
	96: 97, 98: 99, 100: 101, 102: 103, 127: 126, 125: 124, 123: 122, 119: 118, 45: 46,
}

// Header extensions forwarded or used by the focus.
var (
	audioExtensions = []string{
		sdp.SDESMidURI,
		sdp.AudioLevelURI,
	}
	videoExtensions = []string{
		sdp.SDESMidURI,
		sdp.SDESRTPStreamIDURI,
		sdp.SDESRepairRTPStreamIDURI,
		"urn:3gpp:video-orientation",
		"http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
		"https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension",
		"http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00",
		"http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time",
	}
)

func newMediaEngine() (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range Codecs {
		kind := webrtc.RTPCodecTypeVideo
		if c.MimeType == webrtc.MimeTypeOpus {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			return nil, fmt.Errorf("rtc: register codec %s: %w", c.MimeType, err)
		}
		if kind != webrtc.RTPCodecTypeVideo {
			continue
		}
		pt, ok := rtxPayloadTypes[c.PayloadType]
		if !ok {
			return nil, fmt.Errorf("rtc: codec %s (%d) has no rtx payload type", c.MimeType, c.PayloadType)
		}
		rtx := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", c.PayloadType)},
			PayloadType:        pt,
		}
		if err := m.RegisterCodec(rtx, kind); err != nil {
			return nil, fmt.Errorf("rtc: register rtx for %s (%d): %w", c.MimeType, c.PayloadType, err)
		}
	}
	// In a fixed order, so that every focus numbers the extensions
	// alike: a cascade trunk then forwards them without renumbering.
	for _, k := range []struct {
		kind webrtc.RTPCodecType
		uris []string
	}{{webrtc.RTPCodecTypeAudio, audioExtensions}, {webrtc.RTPCodecTypeVideo, videoExtensions}} {
		kind := k.kind
		for _, uri := range k.uris {
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, kind); err != nil {
				return nil, fmt.Errorf("rtc: register extension %s: %w", uri, err)
			}
		}
	}
	return m, nil
}

// registerInterceptors chooses pion's interceptors per direction. Each
// acts only on the streams of its direction, so one registry serves
// connections that publish, subscribe, or both:
//   - from publishers: NACK generation, receiver reports, TWCC feedback;
//   - to subscribers: the focus's own estimator (see estimator), which
//     sets the transport-wide sequence number and reads the feedback,
//     one per connection, handed to built as the connection is made.
//
// The receiving ones start their goroutines only when a connection
// receives (receiveOnly), and the receiver reports see only RTCP that
// holds a sender report (senderReportsOnly).
//
// Left out on purpose: the NACK responder (it copies every outgoing
// packet per connection), the stats interceptor (it clones headers), and
// the sender-report generator (the core translates the publisher's own
// reports, which keeps lip-sync; pion's would stamp forwarding time).
// maxNACKsPerPacket bounds how often the focus asks a publisher for one
// packet (see registerInterceptors).
const maxNACKsPerPacket = 3

func registerInterceptors(m *webrtc.MediaEngine, reg *interceptor.Registry, built func(*estimator)) error {
	// pion unwraps RTX after the NACK generator has looked, so the
	// generator never learns that a packet was repaired and would NACK it
	// every 100 ms until it leaves its 512-packet log: measured over vnet,
	// 13 NACKs per lost packet, each answered by a browser with another
	// resend. Three tries (300 ms) still cover a lost retransmission.
	gen, err := nack.NewGeneratorInterceptor(nack.GeneratorMaxNacksPerPacket(maxNACKsPerPacket))
	if err != nil {
		return fmt.Errorf("rtc: nack generator: %w", err)
	}
	reg.Add(receiveOnlyFactory{gen})
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return fmt.Errorf("rtc: receiver reports: %w", err)
	}
	reg.Add(senderReportsOnlyFactory{receiveOnlyFactory{rr}})
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return fmt.Errorf("rtc: register transport-cc: %w", err)
		}
	}
	fb, err := twcc.NewSenderInterceptor()
	if err != nil {
		return fmt.Errorf("rtc: twcc feedback: %w", err)
	}
	reg.Add(receiveOnlyFactory{fb})
	// The send side: the focus's own estimator stamps transport-wide
	// sequence numbers and reads the subscribers' feedback (see
	// estimator).
	reg.Add(estimatorFactory{built: built})
	return nil
}
