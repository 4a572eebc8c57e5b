package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// URLTarget is any WHIP/WHEP server already running: the bench neither
// starts nor stops it, and DELETEs its sessions at the end of each run.
type URLTarget struct {
	// WHIP and WHEP are URL templates: {room} is replaced by the room and
	// {stream} (WHEP only) by the ID of the publisher to watch, the last
	// path element of its WHIP Location.
	WHIP, WHEP string
	// Room names the room; empty means "bench".
	Room string
	// Header is sent with every request (a bearer token, say).
	Header http.Header
	// PID is the server's process for CPU and memory figures; 0 leaves
	// them out.
	PID int
}

// Name is "url".
func (t *URLTarget) Name() string { return "url" }

// Start checks the templates and, when PID is set, that the process exists.
func (t *URLTarget) Start(context.Context) (Server, error) {
	if t.WHIP == "" || t.WHEP == "" {
		return nil, fmt.Errorf("bench: the url target needs both a WHIP and a WHEP URL")
	}
	if t.PID > 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", t.PID)); err != nil {
			return nil, fmt.Errorf("bench: --pid %d: %w", t.PID, err)
		}
	}
	room := t.Room
	if room == "" {
		room = focusRoom
	}
	return &urlServer{t: t, room: room}, nil
}

type urlServer struct {
	t    *URLTarget
	room string
}

func (s *urlServer) PID() int        { return s.t.PID }
func (s *urlServer) Version() string { return "" }
func (s *urlServer) Shared() bool    { return true }
func (s *urlServer) Close() error    { return nil }

func (s *urlServer) expand(tmpl, stream string) string {
	r := strings.NewReplacer("{room}", url.PathEscape(s.room), "{stream}", url.QueryEscape(stream))
	return r.Replace(tmpl)
}

func (s *urlServer) Publish(PublisherSpec) (Request, error) {
	return Request{URL: s.expand(s.t.WHIP, ""), Header: s.t.Header}, nil
}

func (s *urlServer) Subscribe(_ SubscriberSpec, pub Published) (Request, error) {
	return Request{URL: s.expand(s.t.WHEP, pub.ID), Header: s.t.Header}, nil
}
