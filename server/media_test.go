package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/testclient"
)

// TestMediaAndShutdown runs media through a token-guarded focus built from
// config, then shuts it down with the sessions still up.
func TestMediaAndShutdown(t *testing.T) {
	f := start(t, func(c *config.Config) {
		c.WHIP.Tokens = []config.Token{
			{Token: "pub", Rooms: []string{"live-*"}, Publish: true},
			{Token: "view", Rooms: []string{"*"}, View: true},
		}
	})
	base := f.URL
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The tokens from the config reach the front-end.
	for _, tc := range []struct{ room, token string }{{"live-1", "view"}, {"other", "pub"}, {"live-1", ""}} {
		p, err := testclient.Publish(ctx, base, tc.room, testclient.PublishOptions{Token: tc.token})
		if err == nil {
			p.Close()
			t.Fatalf("publish to %q with token %q succeeded", tc.room, tc.token)
		}
		var se *testclient.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
			t.Fatalf("publish to %q with token %q: %v, want 401", tc.room, tc.token, err)
		}
	}

	pub, err := testclient.Publish(ctx, base, "live-1", testclient.PublishOptions{Token: "pub"})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer pub.Close()
	// The room has something to watch once the publisher's media flows.
	view, err := testclient.ViewWhenPublished(ctx, base, "live-1", testclient.ViewOptions{Token: "view"})
	if err != nil {
		t.Fatalf("view: %v", err)
	}
	defer view.Close()
	if err := view.WaitPackets(ctx, webrtc.RTPCodecTypeVideo, 20); err != nil {
		t.Fatalf("no video reached the viewer: %v", err)
	}

	resp, err := http.Get(base + "/api/rooms")
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		Rooms []struct {
			Name       string
			Publishers []json.RawMessage
			Viewers    int
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&status)
	resp.Body.Close()
	if err != nil || len(status.Rooms) != 1 || status.Rooms[0].Name != "live-1" ||
		len(status.Rooms[0].Publishers) != 1 || status.Rooms[0].Viewers != 1 {
		t.Fatalf("/api/rooms = %+v (%v), want live-1 with one publisher and one viewer", status, err)
	}

	began := time.Now()
	f.Stop() // fails the test if Run errs or takes 5 s
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("shutdown with live sessions took %v", d)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("HTTP still served after shutdown")
	}
}
