package whip

import (
	"context"
	"net/http"
	"time"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// gatherTimeout bounds the wait for ICE gathering. Host candidates on
// the shared UDP port gather at once; this only guards against a stall.
const gatherTimeout = 10 * time.Second

// serveOffer creates a WHIP or WHEP session from a POSTed offer.
func (s *Server) serveOffer(w http.ResponseWriter, r *http.Request, kind sessionKind, room string) *httpError {
	if e := s.authorize(r, room, kind.role()); e != nil {
		return e
	}
	body, e := readBody(w, r, "application/sdp")
	if e != nil {
		return e
	}
	offer := string(body)
	sections, err := rtc.CheckOffer(offer, kind.direction())
	if err != nil {
		return offerError(err)
	}

	var pinned focus.ParticipantID
	var sources []*focus.UpTrack
	var size focus.Size
	if kind == viewer {
		if size, e = viewSize(r.URL.Query()); e != nil {
			return e
		}
		pinned = focus.ParticipantID(r.URL.Query().Get("stream"))
		sources = s.waitSources(r.Context(), room, pinned, sections)
		if len(sources) == 0 {
			if pinned != "" {
				return reject(http.StatusNotFound, "no stream %q is published in room %q", pinned, room)
			}
			return reject(http.StatusNotFound, "nothing is published in room %q", room)
		}
	}

	sess, e := s.newSession(kind, room, clientIP(r), pinned, sections)
	if e != nil {
		return e
	}
	ctx, cancel := context.WithTimeout(r.Context(), gatherTimeout)
	defer cancel()
	var answer string
	if kind == publisher {
		sess.pc.OnTrack(sess.onTrack)
		answer, e = sess.negotiate(ctx, offer, nil)
	} else {
		answer, e = sess.negotiate(ctx, offer, func() *httpError { return sess.subscribe(offer, sources, size) })
	}
	if e != nil {
		sess.close("negotiation failed: " + e.reason)
		return e
	}

	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/"+kind.path()+"/"+room+"/"+sess.id)
	h.Set("ETag", sess.ETag())
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	for _, l := range iceServerLinks(s.opts.ICEServers) {
		h.Add("Link", l)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(answer))
	sess.log.Info().Str("remote", r.RemoteAddr).Msg("session started")
	return nil
}
