package whip

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"path"

	"github.com/focus-sfu/focus/internal/httpauth"
)

// Role is what a request wants to do in a room.
type Role int

// Roles.
const (
	RolePublish Role = iota + 1
	RoleView
)

func (r Role) String() string {
	if r == RolePublish {
		return "publish"
	}
	return "view"
}

// Authenticator decides whether a request may act in a room. Other
// strategies (JWTs, Matrix OpenID) plug in here later.
type Authenticator interface {
	Authorize(r *http.Request, room string, role Role) error
}

// Errors from authenticators.
var (
	ErrNoToken  = errors.New("missing bearer token")
	ErrBadToken = errors.New("invalid bearer token")
)

// Token grants publishing and/or viewing in rooms matching any of Rooms
// (path.Match globs).
type Token struct {
	Token   string
	Rooms   []string
	Publish bool
	View    bool
}

// TokenAuth checks static bearer tokens. With no tokens it lets every
// request through.
type TokenAuth struct{ tokens []Token }

// NewTokenAuth returns an authenticator for tokens.
func NewTokenAuth(tokens []Token) *TokenAuth { return &TokenAuth{tokens: tokens} }

// Authorize implements Authenticator.
func (a *TokenAuth) Authorize(r *http.Request, room string, role Role) error {
	if len(a.tokens) == 0 {
		return nil
	}
	got, ok := httpauth.Bearer(r)
	if !ok {
		return ErrNoToken
	}
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare([]byte(got), []byte(t.Token)) != 1 {
			continue
		}
		if role == RolePublish && !t.Publish || role == RoleView && !t.View {
			continue
		}
		for _, pat := range t.Rooms {
			if ok, _ := path.Match(pat, room); ok {
				return nil
			}
		}
	}
	return ErrBadToken
}
