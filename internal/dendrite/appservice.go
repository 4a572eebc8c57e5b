package dendrite

import (
	"context"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// AppServiceClient returns a client that authenticates with an appservice's
// as_token. With a user, every request names it in ?user_id= (identity
// assertion); the user must be the appservice's sender or registered in
// its namespace (RegisterAppServiceUser). Without one, requests act as the
// sender, whose account Dendrite creates at start.
func (s *Server) AppServiceClient(tb testing.TB, asToken string, user id.UserID) *mautrix.Client {
	tb.Helper()
	cli := s.Client(tb, user, asToken)
	cli.SetAppServiceUserID = user != ""
	return cli
}

// RegisterAppServiceUser registers localpart, which must be in the
// exclusive user namespace of the appservice that owns asToken, and
// returns its user ID.
func (s *Server) RegisterAppServiceUser(tb testing.TB, asToken, localpart string) id.UserID {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), requestTimeout)
	defer cancel()
	req := map[string]any{
		"type":          mautrix.AuthTypeAppservice,
		"username":      localpart,
		"inhibit_login": true,
	}
	var resp struct {
		UserID id.UserID `json:"user_id"`
	}
	if err := s.doJSON(ctx, http.MethodPost, s.endpoint("/_matrix/client/v3/register", nil), asToken, req, &resp); err != nil {
		tb.Fatalf("dendrite: register appservice user %q: %v", localpart, err)
	}
	return resp.UserID
}
