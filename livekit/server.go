// Package livekit is the Element Call front-end: the server side of
// LiveKit's signalling protocol (a websocket at /rtc carrying protobuf
// SignalRequest and SignalResponse frames, and two PeerConnections per
// participant), and the token service that trades a Matrix OpenID token
// for the JWT a LiveKit client joins with.
//
// A LiveKit room is the core conference "lk:<room>". Each participant
// publishes on its publisher PeerConnection (the client offers) and
// receives on its subscriber PeerConnection (the focus offers); the
// core forwards between them.
package livekit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// ProtocolVersion is the LiveKit signalling protocol the focus speaks.
const ProtocolVersion = 16

// Options configure the Element Call front-end.
type Options struct {
	SFU    *focus.SFU
	Engine *rtc.Engine
	// APIKey and APISecret verify the JWTs clients join with: the key is
	// the token's issuer, the secret its HMAC key.
	APIKey, APISecret string
	// ICEServers are handed to clients in the join response.
	ICEServers []rtc.ICEServer
	// Token configures the token service (/sfu/get, /get_token); it is
	// served when Token.APISecret is set.
	Token TokenConfig
	Log   zerolog.Logger

	// ReconnectWindow is how long a participant whose websocket dropped is
	// kept for it to resume. Zero means 20 s.
	ReconnectWindow time.Duration
	// RequireRoomCreate lets only tokens with the roomCreate grant start
	// a room that does not exist yet, as a LiveKit server with
	// auto_create off does. Off, any valid token starts its room.
	RequireRoomCreate bool
	// Version is reported to clients as the server version. Empty means
	// "0.0.0".
	Version string
}

// Server serves the LiveKit signalling protocol.
type Server struct {
	opts   Options
	log    zerolog.Logger
	tokens *TokenService

	mu     sync.Mutex
	rooms  map[string]*room
	closed bool
	// sessions are the core IDs of this server's participants, in any
	// room; every other participant of a LiveKit room's conference is
	// foreign. versions are the info versions of foreign participants.
	sessions map[focus.ParticipantID]bool
	versions map[focus.ParticipantID]uint32

	wg          sync.WaitGroup // connections, participants and their goroutines
	unsubscribe func()
}

// Defaults.
const (
	defaultReconnectWindow = 20 * time.Second
	pingInterval           = 5  // seconds, as LiveKit
	pingTimeout            = 15 // seconds
	refreshInterval        = 5 * time.Minute
	refreshMinValidity     = 10 * time.Minute
)

// New returns the front-end; serve its Handler.
func New(opts Options) (*Server, error) {
	switch {
	case opts.SFU == nil || opts.Engine == nil:
		return nil, errors.New("livekit: SFU and Engine are required")
	case opts.APIKey == "" || opts.APISecret == "":
		return nil, errors.New("livekit: an API key and secret are required")
	}
	if opts.ReconnectWindow <= 0 {
		opts.ReconnectWindow = defaultReconnectWindow
	}
	if opts.Version == "" {
		opts.Version = "0.0.0"
	}
	s := &Server{
		opts:     opts,
		log:      opts.Log.With().Str("frontend", "livekit").Logger(),
		rooms:    make(map[string]*room),
		sessions: make(map[focus.ParticipantID]bool),
		versions: make(map[focus.ParticipantID]uint32),
	}
	if opts.Token.APISecret != "" {
		t, err := NewTokenService(opts.Token, opts.Log, s.RoomExists)
		if err != nil {
			return nil, err
		}
		s.tokens = t
	}
	s.unsubscribe = opts.SFU.OnEvent(s.onEvent)
	return s, nil
}

// Handler serves /rtc (the signalling websocket), /rtc/validate, the
// v1 paths (404, so that clients fall back to v0), and, with a token
// service, /sfu/get and /get_token.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/rtc", s.serveRTC)
	mux.HandleFunc("/rtc/validate", s.serveValidate)
	mux.HandleFunc("/rtc/v1", s.serveV1)
	mux.HandleFunc("/rtc/v1/validate", s.serveV1)
	if s.tokens != nil {
		h := s.tokens.Handler()
		mux.Handle("/sfu/get", h)
		mux.Handle("/get_token", h)
	}
	return mux
}

// RoomExists reports whether the LiveKit room name is running.
func (s *Server) RoomExists(name string) bool {
	s.mu.Lock()
	r := s.rooms[name]
	n := 0
	if r != nil {
		n = len(r.participants)
	}
	s.mu.Unlock()
	return n > 0 || s.opts.SFU.Conference(conferenceID(name)) != nil
}

// Close tells every participant the server is going away, ends their
// sessions, and waits for them or ctx.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	var all []*participant
	for _, r := range s.rooms {
		for _, p := range r.participants {
			all = append(all, p)
		}
	}
	s.mu.Unlock()
	for _, p := range all {
		p.close(livekit.DisconnectReason_SERVER_SHUTDOWN, true)
	}
	s.unsubscribe()
	if s.tokens != nil {
		s.tokens.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("livekit: close: %w", ctx.Err())
	}
}

// httpFail answers a request that is refused before any websocket.
// LiveKit clients show the body, so it says what went wrong.
func (s *Server) httpFail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.log.Info().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Int("status", status).Str("reason", msg).Msg("signalling request refused")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}

// allowOrigin lets browsers on any origin read the answers of the
// validate paths: clients fetch them cross-origin to find out why a
// websocket failed, and tokens, not origins, guard the focus.
func allowOrigin(w http.ResponseWriter) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
}

// serveV1 answers the v1 paths (single PeerConnection signalling) with
// 404: current clients try them first and fall back to /rtc on a 404
// whose body does not say the room is missing.
func (s *Server) serveV1(w http.ResponseWriter, r *http.Request) {
	allowOrigin(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte("the focus does not serve v1 signalling; use /rtc\n"))
}

// serveValidate mirrors LiveKit's /rtc/validate: 200 "success" for a
// token that may join, 401 with the reason otherwise.
func (s *Server) serveValidate(w http.ResponseWriter, r *http.Request) {
	allowOrigin(w)
	c, status, err := s.authenticate(r)
	if err == nil {
		status, err = s.mayJoin(c)
	}
	if err != nil {
		s.httpFail(w, r, status, err.Error())
		return
	}
	_, _ = w.Write([]byte("success"))
}

// claims are what a verified token says.
type claims struct {
	grants   *auth.ClaimGrants
	identity string
	room     string
	expires  time.Time
}

// Authentication errors; their text reaches the client.
var (
	errNoToken       = errors.New("no access token: pass access_token or Authorization: Bearer")
	errBadToken      = errors.New("invalid authorization token")
	errBadAPIKey     = errors.New("invalid API key")
	errNoPermission  = errors.New("permissions denied: the token does not grant roomJoin")
	errNoRoom        = errors.New("the token names no room")
	errNoIdentity    = errors.New("the token names no identity (sub)")
	errRoomNotExists = errors.New("requested room does not exist")
)

// authenticate verifies the request's token.
func (s *Server) authenticate(r *http.Request) (*claims, int, error) {
	token := ""
	if h := r.Header.Get("Authorization"); h != "" {
		t, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, http.StatusUnauthorized, errNoToken
		}
		token = t
	} else {
		token = r.URL.Query().Get("access_token")
	}
	if token == "" {
		return nil, http.StatusUnauthorized, errNoToken
	}
	v, err := auth.ParseAPIToken(token)
	if err != nil {
		return nil, http.StatusUnauthorized, errBadToken
	}
	if v.APIKey() != s.opts.APIKey {
		return nil, http.StatusUnauthorized, errBadAPIKey
	}
	rc, grants, err := v.Verify(s.opts.APISecret)
	if err != nil {
		return nil, http.StatusUnauthorized, fmt.Errorf("%w: %v", errBadToken, err)
	}
	if grants.Video == nil || !grants.Video.RoomJoin {
		return nil, http.StatusUnauthorized, errNoPermission
	}
	c := &claims{grants: grants, identity: grants.Identity, room: grants.Video.Room}
	if rc.ExpiresAt != nil {
		c.expires = rc.ExpiresAt.Time
	}
	switch {
	case c.room == "":
		return nil, http.StatusBadRequest, errNoRoom
	case c.identity == "":
		return nil, http.StatusBadRequest, errNoIdentity
	}
	return c, http.StatusOK, nil
}

// mayJoin checks that c's room may be joined: with RequireRoomCreate, a
// room that is not running needs the roomCreate grant.
func (s *Server) mayJoin(c *claims) (int, error) {
	if s.opts.RequireRoomCreate && !c.grants.Video.RoomCreate && !s.RoomExists(c.room) {
		return http.StatusNotFound, errRoomNotExists
	}
	return http.StatusOK, nil
}

// connectParams are the query parameters of /rtc.
type connectParams struct {
	reconnect      bool
	sid            string
	autoSubscribe  bool
	adaptiveStream bool
	clientProtocol int32
	sdk, version   string
}

func parseConnectParams(r *http.Request) connectParams {
	q := r.URL.Query()
	flag := func(k string, def bool) bool {
		switch q.Get(k) {
		case "1", "true":
			return true
		case "0", "false":
			return false
		}
		return def
	}
	p := connectParams{
		reconnect:      flag("reconnect", false),
		sid:            q.Get("sid"),
		autoSubscribe:  flag("auto_subscribe", true),
		adaptiveStream: flag("adaptive_stream", false),
		sdk:            q.Get("sdk"),
		version:        q.Get("version"),
	}
	var cp int32
	if _, err := fmt.Sscan(q.Get("client_protocol"), &cp); err == nil && cp >= 0 {
		p.clientProtocol = cp
	}
	return p
}

// serveRTC is the signalling websocket.
func (s *Server) serveRTC(w http.ResponseWriter, r *http.Request) {
	c, status, err := s.authenticate(r)
	if err != nil {
		s.httpFail(w, r, status, err.Error())
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.httpFail(w, r, http.StatusBadRequest, "/rtc is a websocket")
		return
	}
	params := parseConnectParams(r)
	log := s.log.With().Str("room", c.room).Str("user", c.identity).Str("remote", r.RemoteAddr).Logger()

	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closed {
		s.httpFail(w, r, http.StatusServiceUnavailable, "the focus is shutting down")
		return
	}
	defer s.wg.Done()

	if params.reconnect {
		s.resume(w, r, c, params, log)
		return
	}
	if status, err := s.mayJoin(c); err != nil {
		s.httpFail(w, r, status, err.Error())
		return
	}
	p, err := s.newParticipant(c, params, r.RemoteAddr, log)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, focus.ErrConferenceFull) || errors.Is(err, focus.ErrServerFull) || errors.Is(err, focus.ErrClosed) {
			status = http.StatusServiceUnavailable
		}
		s.httpFail(w, r, status, err.Error())
		return
	}
	ws, err := s.accept(w, r)
	if err != nil {
		p.discard()
		log.Info().Err(err).Msg("websocket upgrade failed")
		return
	}
	conn := newSignalConn(ws, p.log)
	conn.start(&s.wg)
	if err := s.register(p); err != nil {
		conn.close(leaveResponse(livekit.DisconnectReason_JOIN_FAILURE, livekit.LeaveRequest_DISCONNECT), websocket.StatusTryAgainLater, err.Error())
		p.discard()
		return
	}
	p.start(conn)
	p.readLoop(conn)
}

// accept upgrades to the websocket. Any origin may connect: the token
// is the credential, and Element Call runs on its own origin.
func (s *Server) accept(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	return websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
}

// resume reattaches a participant whose websocket dropped.
func (s *Server) resume(w http.ResponseWriter, r *http.Request, c *claims, params connectParams, log zerolog.Logger) {
	p := s.findParticipant(c.room, c.identity)
	ws, err := s.accept(w, r)
	if err != nil {
		log.Info().Err(err).Msg("websocket upgrade failed")
		return
	}
	if p == nil || (params.sid != "" && p.sid != params.sid) || !p.canResume() {
		// The client should join afresh.
		log.Info().Str("sid", params.sid).Msg("resume of a session the focus does not have; asking for a full reconnect")
		conn := newSignalConn(ws, log)
		conn.start(&s.wg)
		conn.close(leaveResponse(livekit.DisconnectReason_STATE_MISMATCH, livekit.LeaveRequest_RECONNECT), websocket.StatusNormalClosure, "unknown session")
		<-conn.closed()
		return
	}
	conn := newSignalConn(ws, p.log)
	conn.start(&s.wg)
	if !p.resume(conn) {
		conn.close(leaveResponse(livekit.DisconnectReason_STATE_MISMATCH, livekit.LeaveRequest_RECONNECT), websocket.StatusNormalClosure, "session ended")
		<-conn.closed()
		return
	}
	p.readLoop(conn)
}

// findParticipant returns the live participant identity of room name.
func (s *Server) findParticipant(name, identity string) *participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[name]
	if r == nil {
		return nil
	}
	for _, p := range r.participants {
		if p.identity == identity {
			return p
		}
	}
	return nil
}

// register adds p to its room, creating the room if need be. A
// participant of the same identity is replaced, as in LiveKit: the
// identity is the member, and a member joins once.
func (s *Server) register(p *participant) error {
	for i := 0; ; i++ {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return focus.ErrClosed
		}
		r := s.rooms[p.roomName]
		if r == nil {
			r = newRoom(p.roomName, time.Now())
			s.rooms[p.roomName] = r
		}
		var old *participant
		for _, o := range r.participants {
			if o.identity == p.identity {
				old = o
				break
			}
		}
		if old == nil || i >= 3 {
			r.participants[p.sid] = p
			p.room = r
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		old.log.Info().Str("new", p.sid).Msg("the same identity joined again; replacing this session")
		old.close(livekit.DisconnectReason_DUPLICATE_IDENTITY, true)
	}
}

// unregister removes p from its room, and the room when it is empty.
func (s *Server) unregister(p *participant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := p.room
	if r == nil || r.participants[p.sid] != p {
		return
	}
	delete(r.participants, p.sid)
	if len(r.participants) == 0 && s.rooms[r.name] == r {
		delete(s.rooms, r.name)
		r.gone = true
	}
}

// roomsOf returns the rooms of a core conference: one per LiveKit name
// it has, its own or an alias (focus.SFU.Alias).
func (s *Server) roomsOf(conf *focus.Conference) []*room {
	names := conf.NamesIn(confPrefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*room
	for _, name := range names {
		if r := s.rooms[name]; r != nil {
			out = append(out, r)
		}
	}
	return out
}

// onEvent turns the core's events into LiveKit messages. It runs on the
// goroutine that caused the event, so it only queues work. Participants
// and tracks of other front-ends in a shared conference are announced
// as foreign participants (foreign.go), and subscribed to like anyone's.
func (s *Server) onEvent(ev focus.Event) {
	switch ev := ev.(type) {
	case focus.ParticipantJoined:
		if !s.isForeign(ev.Participant) {
			return
		}
		for _, r := range s.roomsOf(ev.Conference) {
			s.announceForeign(r, ev.Participant, false)
		}
	case focus.ParticipantLeft:
		if !s.isForeign(ev.Participant) {
			return
		}
		for _, r := range s.roomsOf(ev.Conference) {
			s.announceForeign(r, ev.Participant, true)
		}
	case focus.TrackPublished:
		for _, r := range s.roomsOf(ev.Conference) {
			if owner := s.member(r, string(ev.Participant.ID())); owner != nil {
				s.broadcast(r, owner, true)
			} else if s.isForeign(ev.Participant) {
				s.announceForeign(r, ev.Participant, false)
			} else {
				continue
			}
			for _, o := range s.members(r) {
				if o.part != ev.Participant {
					o.do(func() { o.trackAdded(ev.Track) })
				}
			}
		}
	case focus.TrackUnpublished:
		for _, r := range s.roomsOf(ev.Conference) {
			if owner := s.member(r, string(ev.Participant.ID())); owner != nil {
				owner.trackRemoved(ev.Track)
			} else if s.isForeign(ev.Participant) {
				s.announceForeign(r, ev.Participant, false)
			}
			for _, o := range s.members(r) {
				if o.part != ev.Participant {
					o.do(func() { o.trackGone(ev.Track) })
				}
			}
		}
	case focus.DemandChanged:
		for _, r := range s.roomsOf(ev.Conference) {
			if owner := s.member(r, string(ev.Track.Owner().ID())); owner != nil {
				owner.demandChanged(ev.Track, ev.Wanted)
			}
		}
	case focus.SpeakersChanged:
		for _, r := range s.roomsOf(ev.Conference) {
			for _, o := range s.members(r) {
				o.do(func() { o.speakersChanged(ev.Speakers) })
			}
		}
	case focus.SubscriptionPaused:
		sub := ev.Down.Subscriber()
		for _, r := range s.roomsOf(ev.Conference) {
			if o := s.member(r, string(sub.ID())); o != nil {
				o.do(func() { o.streamStateChanged(ev.Track, ev.Down) })
			}
		}
	}
}

// leaveResponse is a LeaveRequest from the server.
func leaveResponse(reason livekit.DisconnectReason, action livekit.LeaveRequest_Action) *livekit.SignalResponse {
	return &livekit.SignalResponse{Message: &livekit.SignalResponse_Leave{Leave: &livekit.LeaveRequest{
		CanReconnect: action != livekit.LeaveRequest_DISCONNECT,
		Reason:       reason,
		Action:       action,
	}}}
}
