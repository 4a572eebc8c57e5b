package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/livekit/protocol/auth"
)

// LiveKitTarget runs livekit-server (v1.13.5 is the reference) for each
// run, with a generated configuration: an API key, loopback HTTP and one
// UDP port, loopback ICE candidates, no TCP, warn-level logs.
//
// Both sides go through its WHIP endpoint, POST /whip/v1, with a JWT whose
// identity and room grant name the participant and the room. LiveKit
// names a WHIP publisher's tracks "synthesized-microphone" and
// "synthesized-camera". A subscriber is a recvonly offer to the same
// endpoint with the header
//
//	X-LiveKit-ClientInfo: {"subscribedParticipantTrackNames":{"<publisher>":["synthesized-microphone","synthesized-camera"]}}
//
// and LiveKit answers only once those tracks are subscribed. A WHIP
// participant is subscribed to every track of its room (auto-subscribe is
// on for WHIP), and one-shot signalling cannot renegotiate, so a
// connection offering two m-lines in a room of several publishers would
// get two tracks picked at random. The bench therefore gives each
// publisher its own room, "bench-<n>", which its subscriber connections
// join: the same connections and forwarding the focus target gets.
type LiveKitTarget struct {
	// Binary is the livekit-server executable.
	Binary string
	// CPU pins the server (taskset -c); -1 leaves it unpinned.
	CPU int
	// LogDir keeps each server's log and config; empty uses a temporary
	// directory.
	LogDir string
}

// LiveKit's names for a WHIP publisher's tracks.
const (
	lkAudioTrack = "synthesized-microphone"
	lkVideoTrack = "synthesized-camera"
	lkKey        = "focusbench"
)

// FindLiveKit returns the livekit-server binary: the given path, else
// livekit-server on PATH, else `server` (the name `go install
// github.com/livekit/livekit-server/cmd/server@v1.13.5` gives it) in
// $GOBIN, $GOPATH/bin or ~/go/bin.
func FindLiveKit(given string) (string, error) {
	if given != "" {
		return exec.LookPath(given)
	}
	if p, err := exec.LookPath("livekit-server"); err == nil {
		return p, nil
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if d := os.Getenv("GOPATH"); d != "" {
		dirs = append(dirs, filepath.Join(filepath.SplitList(d)[0], "bin"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "server")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("bench: no livekit-server (give --livekit-bin, or: go install github.com/livekit/livekit-server/cmd/server@v1.13.5)")
}

// Name is "livekit".
func (t *LiveKitTarget) Name() string { return "livekit" }

// Start runs a fresh livekit-server and waits until its HTTP port answers.
func (t *LiveKitTarget) Start(ctx context.Context) (Server, error) {
	httpPort, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	udpPort, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	var secret [24]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("bench: livekit secret: %w", err)
	}
	s := &liveKitServer{secret: hex.EncodeToString(secret[:]), base: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	cfg := fmt.Sprintf(`# written by focus bench
port: %d
bind_addresses: ["127.0.0.1"]
rtc:
  udp_port: %d
  tcp_port: 0
  node_ip: 127.0.0.1
  use_external_ip: false
  enable_loopback_candidate: true
keys:
  %s: %s
logging:
  level: warn
`, httpPort, udpPort, lkKey, s.secret)
	dir, rm, err := serverDir(t.LogDir, "livekit")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "livekit.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("bench: livekit config: %w", err)
	}
	s.p, err = startProcess("livekit", t.CPU, dir, rm, []string{t.Binary, "--config", path}, nil, nil)
	if err != nil {
		return nil, err
	}
	s.version = commandVersion(t.Binary, "--version")
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-s.p.exited:
			return nil, s.p.failure("did not start")
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := hc.Get(s.base + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
	}
	err = s.p.failure("did not answer on " + s.base)
	_ = s.p.stop(5 * time.Second)
	return nil, err
}

type liveKitServer struct {
	p       *process
	base    string
	secret  string
	version string
}

func (s *liveKitServer) PID() int        { return s.p.pid() }
func (s *liveKitServer) Version() string { return s.version }
func (s *liveKitServer) Shared() bool    { return false }
func (s *liveKitServer) Close() error    { return s.p.stop(10 * time.Second) }

func lkRoom(publisher int) string      { return fmt.Sprintf("bench-%d", publisher) }
func lkPublisher(publisher int) string { return fmt.Sprintf("pub-%d", publisher) }

func (s *liveKitServer) token(identity, room string, publish bool) (string, error) {
	pub, sub := publish, !publish
	at := auth.NewAccessToken(lkKey, s.secret).
		SetIdentity(identity).
		SetValidFor(time.Hour).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: room, CanPublish: &pub, CanSubscribe: &sub})
	jwt, err := at.ToJWT()
	if err != nil {
		return "", fmt.Errorf("bench: livekit token: %w", err)
	}
	return jwt, nil
}

func (s *liveKitServer) Publish(p PublisherSpec) (Request, error) {
	jwt, err := s.token(lkPublisher(p.Index), lkRoom(p.Index), true)
	if err != nil {
		return Request{}, err
	}
	return Request{URL: s.base + "/whip/v1", Header: http.Header{"Authorization": {"Bearer " + jwt}}}, nil
}

func (s *liveKitServer) Subscribe(sub SubscriberSpec, pub Published) (Request, error) {
	jwt, err := s.token(fmt.Sprintf("sub-%d", sub.Index), lkRoom(pub.Spec.Index), false)
	if err != nil {
		return Request{}, err
	}
	var names []string
	if sub.Audio {
		names = append(names, lkAudioTrack)
	}
	if sub.Video {
		names = append(names, lkVideoTrack)
	}
	info, err := json.Marshal(map[string]any{
		"subscribedParticipantTrackNames": map[string][]string{lkPublisher(pub.Spec.Index): names},
	})
	if err != nil {
		return Request{}, fmt.Errorf("bench: livekit client info: %w", err)
	}
	return Request{URL: s.base + "/whip/v1", Header: http.Header{
		"Authorization":        {"Bearer " + jwt},
		"X-Livekit-Clientinfo": {string(info)},
	}}, nil
}
