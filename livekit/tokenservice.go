package livekit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/config"
)

// DefaultTokenTTL is how long a JWT lives when TokenConfig.TTL is zero.
const DefaultTokenTTL = time.Hour

// maxTokenRequest bounds a token request body; real ones are under 1 KiB.
const maxTokenRequest = 64 << 10

// TokenConfig configures the token service.
type TokenConfig struct {
	// APIKey is the JWTs' issuer (iss); APISecret signs them (HS256).
	APIKey, APISecret string
	// URL is handed to clients as {url}: where they open /rtc.
	URL string
	// TTL is the JWTs' lifetime; 0 means DefaultTokenTTL.
	TTL time.Duration
	// Homeservers maps server names to homeserver base URLs for the
	// OpenID check, instead of federation discovery. Mapped names may be
	// private or loopback addresses; discovered ones may not.
	Homeservers map[string]string
	// FullAccess are the server names whose users may create rooms; "*"
	// is everyone. Other users may only join rooms that exist.
	FullAccess []string
	// HTTPClient, when set, asks the mapped homeservers (it is used
	// without redirects). Discovered homeservers are always asked through
	// the service's own guarded client.
	HTTPClient *http.Client
	// CORSOrigins are the origins browsers may call from. nil allows every
	// origin ("*", as lk-jwt-service does); an empty list allows none.
	CORSOrigins []string
	// Place, when set, chooses the focus that takes a participant of a
	// room (by name) when several foci share the service URL in a mesh:
	// it returns that focus's URL for clients, or "" for this one (URL).
	Place func(room string) string
}

// TokenService trades a Matrix OpenID token for a LiveKit JWT, as
// lk-jwt-service does for Element Call: POST /sfu/get and POST /get_token.
type TokenService struct {
	cfg        TokenConfig
	log        zerolog.Logger
	roomExists func(room string) bool
	openID     *openIDVerifier
}

// NewTokenService checks cfg and builds the service. roomExists reports
// whether a LiveKit room (by name) is running; users without full access
// get a token only for a room that is.
func NewTokenService(cfg TokenConfig, log zerolog.Logger, roomExists func(room string) bool) (*TokenService, error) {
	switch {
	case cfg.APIKey == "":
		return nil, errors.New("livekit: token service: no API key")
	case len(cfg.APISecret) < config.MinLiveKitSecretLen:
		return nil, fmt.Errorf("livekit: token service: the API secret is shorter than %d characters", config.MinLiveKitSecretLen)
	case cfg.URL == "":
		return nil, errors.New("livekit: token service: no URL for clients")
	case cfg.TTL < 0:
		return nil, fmt.Errorf("livekit: token service: negative TTL %s", cfg.TTL)
	case roomExists == nil:
		return nil, errors.New("livekit: token service: roomExists is nil")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTokenTTL
	}
	v, err := newOpenIDVerifier(cfg.Homeservers, cfg.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("livekit: token service: %w", err)
	}
	cfg.FullAccess = slices.Clone(cfg.FullAccess)
	cfg.CORSOrigins = slices.Clone(cfg.CORSOrigins)
	return &TokenService{
		cfg:        cfg,
		log:        log.With().Str("component", "livekit-token").Logger(),
		roomExists: roomExists,
		openID:     v,
	}, nil
}

// Close drops idle connections to homeservers.
func (t *TokenService) Close() {
	t.openID.close()
}

// Handler serves POST (and the CORS preflight OPTIONS) on /sfu/get and
// /get_token. Mount it at those two paths.
func (t *TokenService) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/sfu/get", t.endpoint(t.sfuGet))
	mux.HandleFunc("/get_token", t.endpoint(t.getToken))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.cors(w, r)
		writeMatrixError(w, refuse(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request"))
	})
	return mux
}

// tokenResponse is the answer of both endpoints.
type tokenResponse struct {
	URL string `json:"url"`
	JWT string `json:"jwt"`
}

// matrixError is a failed request, answered as a Matrix error body.
type matrixError struct {
	status  int
	errcode string
	msg     string
	// cause is logged, not sent: it may say more than a client should
	// learn (addresses, TLS errors).
	cause error
}

func (e *matrixError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.errcode, e.msg) }

func refuse(status int, errcode, msg string) *matrixError {
	return &matrixError{status: status, errcode: errcode, msg: msg}
}

func badJSON(format string, args ...any) *matrixError {
	return refuse(http.StatusBadRequest, "M_BAD_JSON", fmt.Sprintf(format, args...))
}

func writeMatrixError(w http.ResponseWriter, e *matrixError) {
	writeJSON(w, e.status, struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}{e.errcode, e.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// endpoint wraps one token endpoint: CORS, the method, the body, errors.
func (t *TokenService) endpoint(serve func(r *http.Request, body []byte) (tokenResponse, *matrixError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t.cors(w, r)
		switch r.Method {
		case http.MethodOptions:
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodPost:
		default:
			w.Header().Set("Allow", "OPTIONS, POST")
			writeMatrixError(w, refuse(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Use POST"))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenRequest))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeMatrixError(w, refuse(http.StatusRequestEntityTooLarge, "M_TOO_LARGE",
					fmt.Sprintf("The request body is larger than %d bytes", maxTokenRequest)))
				return
			}
			writeMatrixError(w, refuse(http.StatusBadRequest, "M_NOT_JSON", "Error reading request"))
			return
		}
		resp, merr := serve(r, body)
		if merr != nil {
			ev := t.log.Info()
			if merr.cause != nil {
				ev = ev.AnErr("cause", merr.cause)
			}
			ev.Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Int("status", merr.status).
				Str("errcode", merr.errcode).Str("reason", merr.msg).Msg("token request refused")
			writeMatrixError(w, merr)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// cors answers browsers: lk-jwt-service allows every origin, and so does a
// nil CORSOrigins.
func (t *TokenService) cors(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	allowed := "*"
	if t.cfg.CORSOrigins != nil {
		allowed = ""
		origin := r.Header.Get("Origin")
		for _, o := range t.cfg.CORSOrigins {
			if o == "*" {
				allowed = "*"
				break
			}
			if origin != "" && strings.EqualFold(o, origin) {
				allowed = origin
				break
			}
		}
		h.Add("Vary", "Origin")
		if allowed == "" {
			return
		}
	}
	h.Set("Access-Control-Allow-Origin", allowed)
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Accept, Content-Type, Content-Length, Accept-Encoding, Authorization, X-CSRF-Token")
	h.Set("Access-Control-Max-Age", "86400")
}

// openIDToken is what a client gets from its homeserver's
// /_matrix/client/v3/user/{userId}/openid/request_token.
type openIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	// ExpiresIn is not used: the homeserver knows when its token expires.
	ExpiresIn json.RawMessage `json:"expires_in"`
}

// delayedLeave are MSC4140 delayed-leave delegation fields, which the
// service does not implement. A request carrying any of them is refused,
// never served without them: the client would count on the service to
// keep its delayed leave event from firing, and the homeserver would end
// its membership mid-call.
type delayedLeave struct {
	DelayID       json.RawMessage `json:"delay_id"`
	DelayTimeout  json.RawMessage `json:"delay_timeout"`
	DelayCSAPIURL json.RawMessage `json:"delay_cs_api_url"`
}

func (d delayedLeave) requested() bool {
	for _, f := range []json.RawMessage{d.DelayID, d.DelayTimeout, d.DelayCSAPIURL} {
		if f != nil && string(f) != "null" {
			return true
		}
	}
	return false
}

// sfuGetRequest is the body of POST /sfu/get (Element Call's legacy
// endpoint).
type sfuGetRequest struct {
	Room        string      `json:"room"`
	OpenIDToken openIDToken `json:"openid_token"`
	DeviceID    string      `json:"device_id"`
	delayedLeave
}

// getTokenRequest is the body of POST /get_token (MSC4195 members).
type getTokenRequest struct {
	RoomID      string      `json:"room_id"`
	SlotID      string      `json:"slot_id"`
	OpenIDToken openIDToken `json:"openid_token"`
	Member      struct {
		ID              string `json:"id"`
		ClaimedUserID   string `json:"claimed_user_id"`
		ClaimedDeviceID string `json:"claimed_device_id"`
	} `json:"member"`
	delayedLeave
}

// decodeRequest decodes a JSON object into v: not JSON at all is
// M_NOT_JSON, JSON of the wrong shape M_BAD_JSON. Unknown fields are
// ignored.
func decodeRequest(body []byte, v any) *matrixError {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return badJSON("The request body must be a JSON object")
		}
		return badJSON("`%s` must be a %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
	}
	return refuse(http.StatusBadRequest, "M_NOT_JSON", "The request body is not JSON")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct":
		return "JSON object"
	case "string":
		return "string"
	default:
		return "JSON value of another type"
	}
}

// decodeSFUGet decodes and checks a /sfu/get body.
func decodeSFUGet(body []byte) (sfuGetRequest, *matrixError) {
	var req sfuGetRequest
	if err := decodeRequest(body, &req); err != nil {
		return req, err
	}
	switch {
	case req.delayedLeave.requested():
		return req, badJSON("Delayed leave delegation (`delay_id`, `delay_timeout`, `delay_cs_api_url`) is not supported")
	case req.Room == "":
		return req, badJSON("The request body is missing `room`")
	case req.DeviceID == "":
		return req, badJSON("The request body is missing `device_id`")
	}
	return req, checkOpenIDToken(req.OpenIDToken)
}

// decodeGetToken decodes and checks a /get_token body.
func decodeGetToken(body []byte) (getTokenRequest, *matrixError) {
	var req getTokenRequest
	if err := decodeRequest(body, &req); err != nil {
		return req, err
	}
	switch {
	case req.delayedLeave.requested():
		return req, badJSON("Delayed leave delegation (`delay_id`, `delay_timeout`, `delay_cs_api_url`) is not supported")
	case req.RoomID == "" || req.SlotID == "":
		return req, badJSON("The request body is missing `room_id` or `slot_id`")
	case req.Member.ID == "" || req.Member.ClaimedUserID == "" || req.Member.ClaimedDeviceID == "":
		return req, badJSON("The request body `member` is missing `id`, `claimed_user_id` or `claimed_device_id`")
	}
	return req, checkOpenIDToken(req.OpenIDToken)
}

func checkOpenIDToken(tok openIDToken) *matrixError {
	switch {
	case tok.AccessToken == "" || tok.MatrixServerName == "":
		return badJSON("The request body `openid_token` is missing `access_token` or `matrix_server_name`")
	case config.CheckServerName("matrix_server_name", tok.MatrixServerName) != nil:
		return badJSON("`openid_token.matrix_server_name` %q is not a server name", tok.MatrixServerName)
	}
	return nil
}

// sfuGet serves POST /sfu/get: the slot is m.call#ROOM and the identity
// @user:server:DEVICE.
func (t *TokenService) sfuGet(r *http.Request, body []byte) (tokenResponse, *matrixError) {
	req, merr := decodeSFUGet(body)
	if merr != nil {
		return tokenResponse{}, merr
	}
	user, merr := t.verify(r, req.OpenIDToken)
	if merr != nil {
		return tokenResponse{}, merr
	}
	device := id.DeviceID(req.DeviceID)
	return t.grant(r, user, device, id.RoomID(req.Room), LegacySlotID, LegacyIdentity(user, device))
}

// getToken serves POST /get_token: the claimed user must be the token's,
// and the identity is the member hash.
func (t *TokenService) getToken(r *http.Request, body []byte) (tokenResponse, *matrixError) {
	req, merr := decodeGetToken(body)
	if merr != nil {
		return tokenResponse{}, merr
	}
	user, merr := t.verify(r, req.OpenIDToken)
	if merr != nil {
		return tokenResponse{}, merr
	}
	if string(user) != req.Member.ClaimedUserID {
		merr := refuse(http.StatusUnauthorized, "M_UNAUTHORIZED",
			"The request could not be authorised: `member.claimed_user_id` is not the OpenID token's user")
		merr.cause = fmt.Errorf("the token is %s's, the claim %q's", user, req.Member.ClaimedUserID)
		return tokenResponse{}, merr
	}
	device := id.DeviceID(req.Member.ClaimedDeviceID)
	return t.grant(r, user, device, id.RoomID(req.RoomID), req.SlotID, MemberIdentity(user, device, req.Member.ID))
}

// verify checks the OpenID token at the user's homeserver.
func (t *TokenService) verify(r *http.Request, tok openIDToken) (id.UserID, *matrixError) {
	user, err := t.openID.userInfo(r.Context(), tok.MatrixServerName, tok.AccessToken)
	if err == nil {
		return user, nil
	}
	msg := "The request could not be authorised"
	switch {
	case errors.Is(err, errTokenRejected):
		msg += ": the homeserver did not accept the OpenID token"
	case errors.Is(err, errWrongServer):
		msg += ": the homeserver named a user of another server"
	case errors.Is(err, errHomeserverUnreachable):
		msg += fmt.Sprintf(": could not reach the homeserver of %s to check the OpenID token", tok.MatrixServerName)
	}
	return "", &matrixError{status: http.StatusUnauthorized, errcode: "M_UNAUTHORIZED", msg: msg, cause: err}
}

// fullAccess reports whether users of server may create rooms.
func (t *TokenService) fullAccess(server string) bool {
	return slices.Contains(t.cfg.FullAccess, "*") || slices.Contains(t.cfg.FullAccess, server)
}

// grant mints the JWT for user in the slot's room, or refuses a user
// without full access when the room is not running.
func (t *TokenService) grant(r *http.Request, user id.UserID, device id.DeviceID, room id.RoomID, slot, identity string) (tokenResponse, *matrixError) {
	name := RoomName(room, slot)
	// verify made sure the user is of the token's server.
	_, server, _ := strings.Cut(string(user), ":")
	full := t.fullAccess(server)
	log := t.log.With().Str("user", string(user)).Str("device", string(device)).
		Str("room", name).Bool("full_access", full).Str("path", r.URL.Path).Logger()
	if !full && !t.roomExists(name) {
		merr := refuse(http.StatusForbidden, "M_FORBIDDEN",
			"This call has not started yet, and only users of this focus's own homeservers may start one")
		merr.cause = fmt.Errorf("room %s is not running, and %s has no full access", name, user)
		return tokenResponse{}, merr
	}
	jwt, err := t.mint(name, identity, full)
	if err != nil {
		log.Error().Err(err).Msg("mint a JWT")
		return tokenResponse{}, refuse(http.StatusInternalServerError, "M_UNKNOWN", "Internal Server Error")
	}
	url := t.cfg.URL
	if t.cfg.Place != nil {
		if u := t.cfg.Place(name); u != "" {
			url = u
		}
	}
	log.Info().Str("identity", identity).Str("url", url).Msg("token issued")
	return tokenResponse{URL: url, JWT: jwt}, nil
}

// mint signs a token to join room as identity, with publish, subscribe
// and own-metadata rights, and roomCreate for full access.
func (t *TokenService) mint(room, identity string, create bool) (string, error) {
	yes := true
	grant := &auth.VideoGrant{
		RoomJoin:             true,
		RoomCreate:           create,
		Room:                 room,
		CanPublish:           &yes,
		CanSubscribe:         &yes,
		CanUpdateOwnMetadata: &yes,
	}
	return auth.NewAccessToken(t.cfg.APIKey, t.cfg.APISecret).
		SetVideoGrant(grant).
		SetIdentity(identity).
		SetValidFor(t.cfg.TTL).
		ToJWT()
}
