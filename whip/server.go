// Package whip is the WHIP (RFC 9725) and WHEP front-end: HTTP
// publishing and playback with no signalling server beyond one POST.
package whip

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// Limits bound the sessions; zero means unlimited.
type Limits struct {
	PerRoom int
	PerIP   int
	Total   int
}

// Options configure a Server.
type Options struct {
	Engine *rtc.Engine
	SFU    *focus.SFU
	// Tokens are checked when Auth is nil. Empty means open.
	Tokens []Token
	// Auth replaces the token check when set.
	Auth        Authenticator
	AdminToken  string
	ICEServers  []rtc.ICEServer
	CORSOrigins []string
	Limits      Limits
	Log         zerolog.Logger
	// ConnectTimeout closes a session whose peer never connects. Zero
	// means 30 s.
	ConnectTimeout time.Duration
}

// Server serves WHIP and WHEP.
type Server struct {
	opts Options
	auth Authenticator
	log  zerolog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	perRoom  map[string]int
	perIP    map[string]int
	closed   bool
	wg       sync.WaitGroup // session goroutines

	unsubscribe func()
}

// Conference namespace of WHIP rooms in the core.
const confPrefix = "whip:"

// ConferenceID is the core's name for the WHIP/WHEP room: what
// focus.SFU.Alias takes to share the room with another front-end.
func ConferenceID(room string) focus.ConferenceID { return focus.ConferenceID(confPrefix + room) }

// New returns a WHIP/WHEP server.
func New(opts Options) (*Server, error) {
	if opts.Engine == nil || opts.SFU == nil {
		return nil, errors.New("whip: Engine and SFU are required")
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	s := &Server{
		opts:     opts,
		auth:     opts.Auth,
		log:      opts.Log.With().Str("frontend", "whip").Logger(),
		sessions: make(map[string]*session),
		perRoom:  make(map[string]int),
		perIP:    make(map[string]int),
	}
	if s.auth == nil {
		s.auth = NewTokenAuth(opts.Tokens)
	}
	s.unsubscribe = opts.SFU.OnEvent(s.onEvent)
	return s, nil
}

// Handler serves /whip/ and /whep/.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, kind := range []sessionKind{publisher, viewer} {
		base := "/" + kind.path() + "/{room}"
		mux.HandleFunc("POST "+base, s.handle(kind, s.serveOffer))
		mux.HandleFunc("OPTIONS "+base, s.handle(kind, s.serveOptions))
		mux.HandleFunc("PATCH "+base+"/{id}", s.handle(kind, s.servePatch))
		mux.HandleFunc("DELETE "+base+"/{id}", s.handle(kind, s.serveDelete))
		mux.HandleFunc("OPTIONS "+base+"/{id}", s.handle(kind, s.serveOptions))
	}
	return mux
}

// handle wraps a handler: CORS, room validation, and rejections.
func (s *Server) handle(kind sessionKind, fn func(http.ResponseWriter, *http.Request, sessionKind, string) *httpError) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.cors(w, r)
		room := r.PathValue("room")
		err := validRoom(room)
		var herr *httpError
		if err != nil {
			herr = reject(http.StatusBadRequest, "%v", err)
		} else {
			herr = fn(w, r, kind, room)
		}
		if herr == nil {
			return
		}
		for k, v := range herr.header {
			w.Header()[k] = v
		}
		s.log.Info().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
			Int("status", herr.status).Str("reason", herr.reason).Msg("request rejected")
		http.Error(w, herr.reason, herr.status)
	}
}

// authorize runs the authenticator and shapes its refusal.
func (s *Server) authorize(r *http.Request, room string, role Role) *httpError {
	if err := s.auth.Authorize(r, room, role); err != nil {
		e := reject(http.StatusUnauthorized, "%v", err)
		e.header = http.Header{"Www-Authenticate": {`Bearer realm="focus"`}}
		return e
	}
	return nil
}

func (s *Server) serveOptions(w http.ResponseWriter, r *http.Request, kind sessionKind, room string) *httpError {
	h := w.Header()
	if r.PathValue("id") == "" {
		h.Set("Accept-Post", "application/sdp")
		h.Set("Access-Control-Allow-Methods", "OPTIONS, POST")
		for _, l := range iceServerLinks(s.opts.ICEServers) {
			h.Add("Link", l)
		}
	} else {
		h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
		h.Set("Access-Control-Allow-Methods", "OPTIONS, PATCH, DELETE")
	}
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request, kind sessionKind, room string) *httpError {
	if e := s.authorize(r, room, kind.role()); e != nil {
		return e
	}
	sess, e := s.lookup(kind, room, r.PathValue("id"))
	if e != nil {
		return e
	}
	sess.close("deleted by client")
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) lookup(kind sessionKind, room, id string) (*session, *httpError) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil || sess.kind != kind || sess.room != room {
		return nil, reject(http.StatusNotFound, "no %s session %q in room %q", kind.path(), id, room)
	}
	return sess, nil
}

// admit reserves a session slot, or refuses with 503.
func (s *Server) admit(room, ip string) *httpError {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.opts.Limits
	var why string
	switch {
	case s.closed:
		why = "server is shutting down"
	case l.Total > 0 && len(s.sessions) >= l.Total:
		why = "too many sessions on this server"
	case l.PerRoom > 0 && s.perRoom[room] >= l.PerRoom:
		why = "too many sessions in this room"
	case l.PerIP > 0 && s.perIP[ip] >= l.PerIP:
		why = "too many sessions from this address"
	default:
		s.perRoom[room]++
		s.perIP[ip]++
		return nil
	}
	return overloaded(why)
}

func overloaded(why string) *httpError {
	e := reject(http.StatusServiceUnavailable, "%s; retry later", why)
	e.header = http.Header{"Retry-After": {strconv.Itoa(10)}}
	return e
}

// release gives back a slot taken by admit.
func (s *Server) release(room, ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perRoom[room]--; s.perRoom[room] <= 0 {
		delete(s.perRoom, room)
	}
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// roomSessions returns the sessions of a room, ordered by creation.
func (s *Server) roomSessions(room string) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*session
	for _, sess := range s.sessions {
		if sess.room == room {
			out = append(out, sess)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].created.Before(out[j].created) })
	return out
}

// Close ends every session and waits for their goroutines, or ctx.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	all := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	s.unsubscribe()
	for _, sess := range all {
		sess.close("server shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
