package vnettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

// session is a client PeerConnection on the virtual network, signalled
// over WHIP or WHEP (one POST of the whole offer, no trickle). The HTTP
// exchange runs on the host's network, the media on the virtual one.
type session struct {
	pc       *webrtc.PeerConnection
	http     *http.Client
	resource string // absolute URL of the resource the server made
}

func newSession(api *webrtc.API) (*session, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("vnettest: peer connection: %w", err)
	}
	// No keep-alive: an idle pooled connection would outlive the test's
	// goroutine check.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	return &session{pc: pc, http: hc}, nil
}

// negotiate POSTs the offer to endpoint, applies the answer and waits
// until the connection is up.
func (s *session) negotiate(ctx context.Context, endpoint string) error {
	offer, err := s.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("vnettest: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("vnettest: set offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fmt.Errorf("vnettest: gather: %w", ctx.Err())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(s.pc.LocalDescription().SDP))
	if err != nil {
		return fmt.Errorf("vnettest: offer request: %w", err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("vnettest: POST %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("vnettest: POST %s: read answer: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("vnettest: POST %s: status %d: %s", endpoint, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("vnettest: POST %s: no Location: %w", endpoint, err)
	}
	s.resource = loc.String()
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return fmt.Errorf("vnettest: apply answer: %w", err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		switch st := s.pc.ConnectionState(); st {
		case webrtc.PeerConnectionStateConnected:
			return nil
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			return fmt.Errorf("vnettest: connection %s before it was up", st)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("vnettest: connect (state %s): %w", s.pc.ConnectionState(), ctx.Err())
		}
	}
}

// close DELETEs the resource, if there is one, and closes the
// connection.
func (s *session) close() error {
	var errs []error
	if s.resource != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.resource, nil)
		if err == nil {
			var resp *http.Response
			if resp, err = s.http.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("vnettest: DELETE %s: %w", s.resource, err))
		}
	}
	if err := s.pc.Close(); err != nil {
		errs = append(errs, fmt.Errorf("vnettest: close peer connection: %w", err))
	}
	return errors.Join(errs...)
}
