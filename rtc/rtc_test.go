package rtc

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
)

func TestEngineBindsOnePortAndAdvertisesLoopback(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			e, err := New(Config{BindAddress: host}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			addr := e.UDPAddr()
			if addr.Port == 0 || !addr.IP.Equal(net.ParseIP(host)) {
				t.Fatalf("bound %v", addr)
			}
			for i := 0; i < 2; i++ { // every connection shares the port
				cands := gatheredCandidates(t, e)
				if len(cands) == 0 {
					t.Fatal("no candidates")
				}
				for _, c := range cands {
					if c.Port != uint16(addr.Port) || !net.ParseIP(c.Address).Equal(addr.IP) {
						t.Fatalf("candidate %s:%d, want %v", c.Address, c.Port, addr)
					}
				}
			}
		})
	}
}

func TestEngineNAT1To1(t *testing.T) {
	e, err := New(Config{BindAddress: "127.0.0.1", PublicIPs: []string{"203.0.113.7"}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, c := range gatheredCandidates(t, e) {
		if c.Address != "203.0.113.7" {
			t.Fatalf("candidate %s, want the public IP", c.Address)
		}
	}
}

func TestEngineConfigErrors(t *testing.T) {
	if _, err := New(Config{UDPPort: 70000}, zerolog.Nop()); err == nil {
		t.Fatal("port out of range accepted")
	}
	if _, err := New(Config{BindAddress: "not-an-ip"}, zerolog.Nop()); err == nil {
		t.Fatal("bad bind address accepted")
	}
	e, err := New(Config{BindAddress: "127.0.0.1"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := New(Config{BindAddress: "127.0.0.1", UDPPort: e.UDPAddr().Port}, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "listen udp") {
		t.Fatalf("port in use: %v", err)
	}
}

// gatheredCandidates returns the focus's candidates in an answer to a
// minimal offer.
func gatheredCandidates(t *testing.T, e *Engine) []webrtc.ICECandidate {
	t.Helper()
	client, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := client.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := e.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var cands []webrtc.ICECandidate
	done := make(chan struct{})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			close(done)
			return
		}
		cands = append(cands, *c)
	})
	if err := pc.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("gathering did not complete")
	}
	return cands
}

func TestCheckOffer(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	section := func(kind, codec, dir string) string {
		return "m=" + kind + " 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 " + codec + "\r\na=" + dir + "\r\n"
	}
	cases := []struct {
		name     string
		sdp      string
		dir      Direction
		want     error
		sections int // usable sections; 0 when the offer is refused
	}{
		{"empty", "  ", PeerSends, ErrEmptyOffer, 0},
		{"garbage", "hello", PeerSends, ErrBadSDP, 0},
		{"no media", head, PeerSends, ErrNoMedia, 0},
		{"data only", head + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", PeerSends, ErrNoMedia, 0},
		{"unsupported", head + section("audio", "PCMU/8000", "sendonly"), PeerSends, ErrUnsupportedCodecs, 0},
		{"wrong direction", head + section("video", "VP8/90000", "recvonly"), PeerSends, ErrWrongDirection, 0},
		{"publisher", head + section("video", "VP8/90000", "sendonly"), PeerSends, nil, 1},
		{"viewer", head + section("video", "VP8/90000", "recvonly"), PeerReceives, nil, 1},
		{"sendrecv viewer", head + section("audio", "opus/48000/2", "sendrecv"), PeerReceives, nil, 1},
		{"h264 and av1", head + section("video", "H264/90000", "sendonly") + section("video", "AV1/90000", "sendonly"), PeerSends, nil, 2},
		{"one of two unsupported", head + section("audio", "PCMU/8000", "sendonly") + section("video", "VP8/90000", "sendonly"), PeerSends, nil, 1},
	}
	for _, c := range cases {
		n, err := CheckOffer(c.sdp, c.dir)
		if n != c.sections || (c.sections > 0) != (err == nil) || c.want != nil && !strings.Contains(err.Error(), c.want.Error()) {
			t.Errorf("%s: %d sections, %v; want %d, %v", c.name, n, err, c.sections, c.want)
		}
	}
}

func FuzzCheckOffer(f *testing.F) {
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n")
	f.Add("v=0\r\nm=audio 0 RTP/AVP 0\r\n")
	f.Add("")
	f.Add("m=video 9 UDP/TLS/RTP/SAVPF 96 97\na=rtpmap:97 rtx/90000\na=simulcast:send q\nm=")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = CheckOffer(s, PeerSends)
		_, _ = CheckOffer(s, PeerReceives)
		_ = OfferedCodecs(s)
		if out := WithoutSimulcastRTX(s); !strings.Contains(s, "a=simulcast:") && out != s {
			t.Fatalf("an offer without simulcast was changed: %q", s)
		}
	})
}

func TestMatchCodec(t *testing.T) {
	offered := []webrtc.RTPCodecParameters{Codecs[5], Codecs[4]} // H264 pm0, pm1
	got, ok := matchCodec(focusCodec(Codecs[4]), offered)
	if !ok || got.PayloadType != 102 {
		t.Fatalf("exact fmtp match: %v %v", got.PayloadType, ok)
	}
	got, ok = matchCodec(focusCodec(Codecs[6]), offered) // 42e01f: same mime, other fmtp
	if !ok || got.PayloadType != 127 {
		t.Fatalf("mime fallback: %v %v", got.PayloadType, ok)
	}
	if _, ok := matchCodec(focusCodec(Codecs[1]), offered); ok {
		t.Fatal("VP8 matched an H264 offer")
	}
}

func TestWithoutSimulcastRTX(t *testing.T) {
	offer := strings.Join([]string{
		"v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
		"m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=rtpmap:111 opus/48000/2",
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97 98", "a=mid:1", "a=sendonly",
		"a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
		"a=rtpmap:98 VP9/90000", "a=rid:q send", "a=rid:f send", "a=simulcast:send q;f",
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:2", "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000",
		"a=fmtp:97 apt=96", "a=ssrc-group:FID 1 2", "",
	}, "\r\n")
	got := WithoutSimulcastRTX(offer)
	want := strings.Join([]string{
		"v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
		"m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=rtpmap:111 opus/48000/2",
		"m=video 9 UDP/TLS/RTP/SAVPF 96 98", "a=mid:1", "a=sendonly",
		"a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack",
		"a=rtpmap:98 VP9/90000", "a=rid:q send", "a=rid:f send", "a=simulcast:send q;f",
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:2", "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000",
		"a=fmtp:97 apt=96", "a=ssrc-group:FID 1 2", "",
	}, "\r\n")
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if plain := "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:97 rtx/90000\r\n"; WithoutSimulcastRTX(plain) != plain {
		t.Fatal("an offer without simulcast was changed")
	}
}
