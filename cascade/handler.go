package cascade

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pion/webrtc/v4"
)

// maxBody bounds a trunk request's body, and the answer's.
const maxBody = 64 << 10

// Error codes of refused trunk requests, in the Matrix style the other
// HTTP APIs of the focus use.
const (
	errUnauthorized = "M_UNAUTHORIZED"
	errNotJSON      = "M_NOT_JSON"
	errBadJSON      = "M_BAD_JSON"
	errTooLarge     = "M_TOO_LARGE"
	errUnrecognized = "M_UNRECOGNIZED"
	errConflict     = "FOCUS_SAME_NODE"
	errUnavailable  = "FOCUS_UNAVAILABLE"
	errUnknown      = "M_UNKNOWN"
)

// httpError is a refused request.
type httpError struct {
	status  int
	errcode string
	reason  string
}

func refuse(status int, errcode, format string, args ...any) *httpError {
	return &httpError{status: status, errcode: errcode, reason: fmt.Sprintf(format, args...)}
}

// Handler serves the trunk endpoint, POST /cascade/v1/trunk, and
// answers anything else under /cascade/ with 404 or 405. Mount it at the
// root of the listener other foci reach (the mesh identity's TrunkURL):
// the path is part of what is signed.
func (c *Cascade) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+trunkPath, c.wrap(c.serveTrunk))
	mux.HandleFunc(trunkPath, c.wrap(func(w http.ResponseWriter, r *http.Request) *httpError {
		w.Header().Set("Allow", http.MethodPost)
		return refuse(http.StatusMethodNotAllowed, errUnrecognized, "%s is not allowed; POST a trunk request", r.Method)
	}))
	mux.HandleFunc("/", c.wrap(func(w http.ResponseWriter, r *http.Request) *httpError {
		return refuse(http.StatusNotFound, errUnrecognized, "no cascade endpoint at %s", r.URL.Path)
	}))
	return mux
}

// wrap turns a refusal into a JSON error body, a log line and a count.
func (c *Cascade) wrap(fn func(http.ResponseWriter, *http.Request) *httpError) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e := fn(w, r)
		if e == nil {
			return
		}
		c.counters.refused.Add(1)
		c.log.Warn().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
			Str("peer", r.Header.Get(headerNode)).Int("status", e.status).Str("errcode", e.errcode).
			Str("reason", e.reason).Msg("trunk request refused")
		writeJSON(w, e.status, errorBody{Errcode: e.errcode, Error: e.reason})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serveTrunk answers a puller's offer and starts the exporting trunk.
func (c *Cascade) serveTrunk(w http.ResponseWriter, r *http.Request) *httpError {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return refuse(http.StatusRequestEntityTooLarge, errTooLarge, "the body is larger than %d bytes", maxBody)
		}
		return refuse(http.StatusBadRequest, errNotJSON, "read the body: %v", err)
	}
	node, err := c.verify.verify(r, trunkPath, body)
	if err != nil {
		return refuse(http.StatusUnauthorized, errUnauthorized, "%v", err)
	}
	req, e := decodeTrunkRequest(body)
	if e != nil {
		return e
	}
	if node == c.self {
		return refuse(http.StatusConflict, errConflict, "the request names this focus (%q) as its sender; are two foci using one node name?", node)
	}
	if c.isClosed() {
		return refuse(http.StatusServiceUnavailable, errUnavailable, "this focus is shutting down")
	}
	answer, trunkID, e := c.accept(r.Context(), node, req.Offer)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, trunkResponse{Version: protocolVersion, Node: c.self, Trunk: trunkID, Answer: answer})
	return nil
}

// decodeTrunkRequest parses and checks a trunk request's body.
func decodeTrunkRequest(body []byte) (trunkRequest, *httpError) {
	var req trunkRequest
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(&req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return req, refuse(http.StatusBadRequest, errBadJSON, "field %q has the wrong type", typeErr.Field)
		}
		return req, refuse(http.StatusBadRequest, errNotJSON, "the body is not a JSON object: %v", err)
	}
	if d.More() {
		return req, refuse(http.StatusBadRequest, errNotJSON, "data after the JSON object")
	}
	switch {
	case req.Version != protocolVersion:
		return req, refuse(http.StatusBadRequest, errBadJSON, "version %d; this focus speaks version %d", req.Version, protocolVersion)
	case strings.TrimSpace(req.Offer) == "":
		return req, refuse(http.StatusBadRequest, errBadJSON, "no offer")
	case !strings.Contains(req.Offer, "m=application"):
		return req, refuse(http.StatusBadRequest, errBadJSON, "the offer has no data channel")
	}
	return req, nil
}

// accept makes the exporting trunk for node's offer and returns its
// answer, with every candidate.
func (c *Cascade) accept(ctx context.Context, node, offer string) (string, string, *httpError) {
	t := newTrunk(c, node, exporting)
	pc, err := c.opts.Engine.NewPeerConnection()
	if err != nil {
		return "", "", refuse(http.StatusInternalServerError, errUnknown, "%v", err)
	}
	t.pc.Store(pc)
	t.watch(pc)
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != dcLabel {
			t.log.Info().Str("label", dc.Label()).Msg("an unknown data channel; ignored")
			return
		}
		t.attach(dc)
	})
	fail := func(e *httpError) (string, string, *httpError) {
		_ = pc.Close()
		t.cancel()
		return "", "", e
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(refuse(http.StatusBadRequest, errBadJSON, "the offer was refused: %v", err))
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(refuse(http.StatusBadRequest, errBadJSON, "cannot answer the offer: %v", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc.PeerConnection)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(refuse(http.StatusBadRequest, errBadJSON, "cannot apply the answer: %v", err))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timing.connect)
	defer cancel()
	sdp, err := waitGathered(ctx, pc, gathered)
	if err != nil {
		return fail(refuse(http.StatusServiceUnavailable, errUnavailable, "%v", err))
	}
	if err := c.startTrunk(t, nil); err != nil {
		return fail(refuse(http.StatusServiceUnavailable, errUnavailable, "this focus is shutting down"))
	}
	t.log.Info().Msg("trunk accepted")
	return sdp, t.id, nil
}
