package whip

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

type sessionKind int

const (
	publisher sessionKind = iota + 1
	viewer
)

func (k sessionKind) path() string {
	if k == publisher {
		return "whip"
	}
	return "whep"
}

func (k sessionKind) role() Role {
	if k == publisher {
		return RolePublish
	}
	return RoleView
}

// coreRole is how other front-ends of a shared room see the session.
func (k sessionKind) coreRole() focus.Role {
	if k == publisher {
		return focus.RoleIngress
	}
	return focus.RoleViewer
}

func (k sessionKind) direction() rtc.Direction {
	if k == publisher {
		return rtc.PeerSends
	}
	return rtc.PeerReceives
}

// session is one WHIP or WHEP resource: a PeerConnection and the
// participant it is in the core.
type session struct {
	srv     *Server
	id      string
	room    string
	ip      string
	kind    sessionKind
	created time.Time
	log     zerolog.Logger
	pc      *webrtc.PeerConnection
	part    *focus.Participant
	pinned  focus.ParticipantID // a viewer's ?stream=
	// expected is how many tracks a publisher's offer announced; pion
	// reports each with its first packet.
	expected int

	mu          sync.Mutex
	closed      bool
	etag        string
	remoteUfrag string
	locals      []*rtc.LocalTrack
	tracks      sync.WaitGroup // OnTrack handlers
	pubs        rtc.Publications

	connectTimer *time.Timer
	closeOnce    sync.Once
}

// newSession admits, joins the core and makes a PeerConnection. On
// success the session is registered and must be closed.
func (s *Server) newSession(kind sessionKind, room, ip string, pinned focus.ParticipantID, expected int) (*session, *httpError) {
	if e := s.admit(room, ip); e != nil {
		return nil, e
	}
	id := randomID()
	part, err := s.opts.SFU.Join(focus.ConferenceID(confPrefix+room), focus.ParticipantInfo{
		ID:       focus.ParticipantID(id),
		Identity: kind.path(),
		Role:     kind.coreRole(),
		Remote:   ip,
	})
	if err != nil {
		s.release(room, ip)
		if errors.Is(err, focus.ErrConferenceFull) || errors.Is(err, focus.ErrServerFull) || errors.Is(err, focus.ErrClosed) {
			return nil, overloaded(err.Error())
		}
		return nil, reject(http.StatusInternalServerError, "join: %v", err)
	}
	peer, err := s.opts.Engine.NewPeerConnection()
	if err != nil {
		part.Leave()
		s.release(room, ip)
		return nil, reject(http.StatusInternalServerError, "%v", err)
	}
	pc := peer.PeerConnection
	if kind == viewer {
		part.SetBandwidthEstimator(peer.Estimator())
	}
	sess := &session{
		srv:      s,
		id:       id,
		room:     room,
		ip:       ip,
		kind:     kind,
		created:  time.Now(),
		log:      s.log.With().Str("room", room).Str("participant", id).Str("kind", kind.path()).Logger(),
		pc:       pc,
		part:     part,
		pinned:   pinned,
		expected: expected,
		etag:     newETag(),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = pc.Close()
		part.Leave()
		s.release(room, ip)
		return nil, overloaded("server is shutting down")
	}
	s.sessions[id] = sess
	s.wg.Add(1)
	s.mu.Unlock()

	pc.OnConnectionStateChange(sess.onState)
	sess.connectTimer = time.AfterFunc(s.opts.ConnectTimeout, func() {
		if sess.pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			sess.close("peer never connected")
		}
	})
	return sess, nil
}

func (sess *session) onState(st webrtc.PeerConnectionState) {
	sess.log.Debug().Str("state", st.String()).Msg("connection state")
	switch st {
	case webrtc.PeerConnectionStateConnected:
		sess.connectTimer.Stop()
	case webrtc.PeerConnectionStateFailed:
		// pion calls back with its locks held; close elsewhere.
		go sess.close("ICE failed: peer vanished")
	case webrtc.PeerConnectionStateClosed:
		go sess.close("connection closed")
	}
}

// negotiate applies the offer, waits for ICE gathering and returns the
// answer with every candidate in it.
func (sess *session) negotiate(ctx context.Context, offer string, beforeAnswer func() *httpError) (string, *httpError) {
	if err := sess.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: rtc.WithoutSimulcastRTX(offer)}); err != nil {
		return "", reject(http.StatusBadRequest, "offer rejected: %v", err)
	}
	if beforeAnswer != nil {
		if e := beforeAnswer(); e != nil {
			return "", e
		}
	}
	return sess.answer(ctx)
}

func (sess *session) answer(ctx context.Context) (string, *httpError) {
	ans, err := sess.pc.CreateAnswer(nil)
	if err != nil {
		return "", reject(http.StatusBadRequest, "cannot answer the offer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(sess.pc)
	if err := sess.pc.SetLocalDescription(ans); err != nil {
		return "", reject(http.StatusBadRequest, "cannot apply the answer: %v", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", reject(http.StatusServiceUnavailable, "ICE gathering did not finish: %v", ctx.Err())
	}
	sess.mu.Lock()
	sess.remoteUfrag = remoteUfrag(sess.pc)
	sess.mu.Unlock()
	return sess.pc.LocalDescription().SDP, nil
}

// trackStarted registers an OnTrack handler, unless the session is
// closing.
func (sess *session) trackStarted() bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.closed {
		return false
	}
	sess.tracks.Add(1)
	return true
}

// close ends the session: its tracks, its participant, its connection.
func (sess *session) close(reason string) {
	sess.closeOnce.Do(func() {
		s := sess.srv
		sess.mu.Lock()
		sess.closed = true
		locals := sess.locals
		sess.mu.Unlock()
		sess.connectTimer.Stop()

		s.mu.Lock()
		delete(s.sessions, sess.id)
		s.mu.Unlock()
		s.release(sess.room, sess.ip)

		sess.part.Leave()
		if err := sess.pc.Close(); err != nil {
			sess.log.Debug().Err(err).Msg("close peer connection")
		}
		sess.tracks.Wait()
		for _, lt := range locals {
			lt.Wait()
		}
		sess.log.Info().Str("reason", reason).Msg("session ended")
		s.wg.Done()
	})
}

// ETag returns the current ICE session's entity tag.
func (sess *session) ETag() string {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.etag
}
