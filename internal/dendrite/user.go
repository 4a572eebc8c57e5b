package dendrite

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// requestTimeout bounds each request a helper makes.
const requestTimeout = 30 * time.Second

// User is one logged-in device of an account on a test server.
type User struct {
	ID          id.UserID
	DeviceID    id.DeviceID
	AccessToken string
	Password    string
	// Client is a mautrix client logged in as this device, using the
	// server's HTTP client.
	Client *mautrix.Client

	server *Server
}

// CreateUser registers localpart through the shared-secret admin API
// (/_synapse/admin/v1/register; registration is otherwise closed) with a
// random password, then logs in on a new device with a random ID. The
// registration leaves one more device behind, "shared_secret_registration".
func (s *Server) CreateUser(tb testing.TB, localpart string) *User {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), requestTimeout)
	defer cancel()
	password := randomString(24)
	if err := s.register(ctx, localpart, password); err != nil {
		tb.Fatalf("dendrite: create user %q: %v", localpart, err)
	}
	u, err := s.login(ctx, localpart, password, id.DeviceID(randomString(10)))
	if err != nil {
		tb.Fatalf("dendrite: create user %q: %v", localpart, err)
	}
	return u
}

// register creates an account with the shared-secret admin API: a nonce,
// then an HMAC-SHA1, keyed with the secret, over
// nonce NUL user NUL password NUL "notadmin".
func (s *Server) register(ctx context.Context, localpart, password string) error {
	const path = "/_synapse/admin/v1/register"
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := s.doJSON(ctx, http.MethodGet, s.endpoint(path, nil), "", nil, &nonce); err != nil {
		return fmt.Errorf("nonce: %w", err)
	}
	mac := hmac.New(sha1.New, []byte(s.SharedSecret))
	mac.Write([]byte(nonce.Nonce + "\x00" + localpart + "\x00" + password + "\x00notadmin"))
	req := map[string]any{
		"nonce":    nonce.Nonce,
		"username": localpart,
		"password": password,
		"admin":    false,
		"mac":      hex.EncodeToString(mac.Sum(nil)),
	}
	if err := s.doJSON(ctx, http.MethodPost, s.endpoint(path, nil), "", req, nil); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	return nil
}

func (s *Server) login(ctx context.Context, localpart, password string, device id.DeviceID) (*User, error) {
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		return nil, err
	}
	cli.Client = s.HTTP
	resp, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:             mautrix.AuthTypePassword,
		Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:         password,
		DeviceID:         device,
		StoreCredentials: true,
	})
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return &User{
		ID:          resp.UserID,
		DeviceID:    resp.DeviceID,
		AccessToken: resp.AccessToken,
		Password:    password,
		Client:      cli,
		server:      s,
	}, nil
}

// Login logs the account in again on another device, with the given ID
// (empty: the server picks one).
func (u *User) Login(tb testing.TB, device id.DeviceID) *User {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), requestTimeout)
	defer cancel()
	nu, err := u.server.login(ctx, u.ID.Localpart(), u.Password, device)
	if err != nil {
		tb.Fatalf("dendrite: %s: %v", u.ID, err)
	}
	return nu
}

// Join joins a room the user is invited to (or may join).
func (u *User) Join(tb testing.TB, room id.RoomID) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), requestTimeout)
	defer cancel()
	if _, err := u.Client.JoinRoomByID(ctx, room); err != nil {
		tb.Fatalf("dendrite: %s joins %s: %v", u.ID, room, err)
	}
}

// Invite invites another user to a room.
func (u *User) Invite(tb testing.TB, room id.RoomID, invitee id.UserID) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), requestTimeout)
	defer cancel()
	if _, err := u.Client.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: invitee}); err != nil {
		tb.Fatalf("dendrite: %s invites %s to %s: %v", u.ID, invitee, room, err)
	}
}

// SendState sets a state event in a room and returns its event ID. Only
// the name of typ matters; it is sent as a state event.
func (u *User) SendState(tb testing.TB, room id.RoomID, typ event.Type, stateKey string, content any) id.EventID {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), requestTimeout)
	defer cancel()
	typ.Class = event.StateEventType
	resp, err := u.Client.SendStateEvent(ctx, room, typ, stateKey, content)
	if err != nil {
		tb.Fatalf("dendrite: %s sends %s/%q in %s: %v", u.ID, typ.Type, stateKey, room, err)
	}
	return resp.EventID
}

// OpenIDToken asks the homeserver for an OpenID token for this user, as
// Element Call does before it asks for a LiveKit JWT.
func (u *User) OpenIDToken(tb testing.TB) *mautrix.RespOpenIDToken {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), requestTimeout)
	defer cancel()
	tok, err := u.Client.RequestOpenIDToken(ctx)
	if err != nil {
		tb.Fatalf("dendrite: %s: openid token: %v", u.ID, err)
	}
	return tok
}

// OpenIDUserInfo checks an OpenID token the way a token service does,
// through GET /_matrix/federation/v1/openid/userinfo, and returns the user
// it names.
func (s *Server) OpenIDUserInfo(ctx context.Context, token string) (id.UserID, error) {
	var info struct {
		Sub id.UserID `json:"sub"`
	}
	u := s.endpoint("/_matrix/federation/v1/openid/userinfo", url.Values{"access_token": {token}})
	if err := s.doJSON(ctx, http.MethodGet, u, "", nil, &info); err != nil {
		return "", fmt.Errorf("dendrite: openid userinfo: %w", err)
	}
	return info.Sub, nil
}

// HTTPError is a non-2xx answer from the server.
type HTTPError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, e.Body)
}

// doJSON sends body (if not nil) as JSON with an optional bearer token and
// decodes a 2xx answer into out (if not nil).
func (s *Server) doJSON(ctx context.Context, method, url, token string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		// The query can hold a token; name the path only.
		return &HTTPError{Method: method, URL: req.URL.Path, Status: resp.StatusCode, Body: string(b)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, req.URL.Path, err)
	}
	return nil
}

// randomString returns n random capital letters, the shape of Synapse's
// device IDs.
func randomString(n int) string {
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}
