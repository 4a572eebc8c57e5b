package whip

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/rtc"
)

// sdpFrag is a parsed application/trickle-ice-sdpfrag body (RFC 8840).
type sdpFrag struct {
	ufrag, pwd string
	candidates []fragCandidate
}

type fragCandidate struct {
	mid  string
	line string // without the "a=" prefix
}

// maxFragCandidates bounds the candidates one PATCH may carry.
const maxFragCandidates = 64

func parseSDPFrag(body string) (sdpFrag, error) {
	var f sdpFrag
	mid := ""
	for i, line := range strings.Split(body, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		if len(line) < 2 || line[1] != '=' {
			return f, fmt.Errorf("line %d: not an SDP line: %.40q", i+1, line)
		}
		switch {
		case line[0] == 'm':
			mid = ""
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "a=candidate:"):
			if len(f.candidates) == maxFragCandidates {
				return f, fmt.Errorf("more than %d candidates", maxFragCandidates)
			}
			f.candidates = append(f.candidates, fragCandidate{mid: mid, line: line[2:]})
		}
	}
	if (f.ufrag == "") != (f.pwd == "") {
		return f, errors.New("ice-ufrag and ice-pwd must come together")
	}
	return f, nil
}

// servePatch takes trickled candidates (204) or an ICE restart (200).
func (s *Server) servePatch(w http.ResponseWriter, r *http.Request, kind sessionKind, room string) *httpError {
	if e := s.authorize(r, room, kind.role()); e != nil {
		return e
	}
	sess, e := s.lookup(kind, room, r.PathValue("id"))
	if e != nil {
		return e
	}
	body, e := readBody(w, r, "application/trickle-ice-sdpfrag")
	if e != nil {
		return e
	}
	frag, err := parseSDPFrag(string(body))
	if err != nil {
		return reject(http.StatusBadRequest, "bad sdpfrag: %v", err)
	}
	ifMatch := r.Header.Get("If-Match")
	sess.mu.Lock()
	etag, current := sess.etag, sess.remoteUfrag
	sess.mu.Unlock()

	if frag.ufrag != "" && frag.ufrag != current {
		if ifMatch == "" {
			return reject(http.StatusPreconditionRequired, "an ICE restart needs If-Match")
		}
		if ifMatch != "*" && ifMatch != etag {
			return reject(http.StatusPreconditionFailed, "If-Match %s does not match the ICE session %s", ifMatch, etag)
		}
		return sess.restartICE(r.Context(), w, frag)
	}
	if ifMatch != "" && ifMatch != "*" && ifMatch != etag {
		return reject(http.StatusPreconditionFailed, "If-Match %s does not match the ICE session %s", ifMatch, etag)
	}
	for _, c := range frag.candidates {
		init := webrtc.ICECandidateInit{Candidate: c.line}
		if c.mid != "" {
			mid := c.mid
			init.SDPMid = &mid
		}
		if err := sess.pc.AddICECandidate(init); err != nil {
			return reject(http.StatusBadRequest, "bad candidate %.60q: %v", c.line, err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// restartICE re-offers the remote description with the new credentials
// and answers with the focus's new credentials and candidates.
func (sess *session) restartICE(ctx context.Context, w http.ResponseWriter, frag sdpFrag) *httpError {
	remote := sess.pc.RemoteDescription()
	if remote == nil {
		return reject(http.StatusConflict, "session has no description yet")
	}
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(remote.SDP); err != nil {
		return reject(http.StatusInternalServerError, "stored offer: %v", err)
	}
	desc.Origin.SessionVersion++
	setICECredentials(desc.Attributes, frag.ufrag, frag.pwd)
	for _, m := range desc.MediaDescriptions {
		setICECredentials(m.Attributes, frag.ufrag, frag.pwd)
	}
	offer, err := desc.Marshal()
	if err != nil {
		return reject(http.StatusInternalServerError, "restart offer: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, gatherTimeout)
	defer cancel()
	if err := sess.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: rtc.WithoutSimulcastRTX(string(offer))}); err != nil {
		return reject(http.StatusBadRequest, "ICE restart rejected: %v", err)
	}
	answer, e := sess.answer(ctx)
	if e != nil {
		return e
	}
	body, err := answerFrag(answer)
	if err != nil {
		return reject(http.StatusInternalServerError, "%v", err)
	}
	etag := newETag()
	sess.mu.Lock()
	sess.etag = etag
	sess.mu.Unlock()
	w.Header().Set("Content-Type", "application/trickle-ice-sdpfrag")
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(body))
	sess.log.Info().Msg("ICE restarted")
	return nil
}

func setICECredentials(attrs []sdp.Attribute, ufrag, pwd string) {
	for i := range attrs {
		switch attrs[i].Key {
		case "ice-ufrag":
			attrs[i].Value = ufrag
		case "ice-pwd":
			attrs[i].Value = pwd
		}
	}
}

// answerFrag extracts the ICE part of an answer as an sdpfrag.
func answerFrag(answer string) (string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		return "", fmt.Errorf("own answer: %w", err)
	}
	var b strings.Builder
	ufrag, pwd := attr(d.Attributes, "ice-ufrag"), attr(d.Attributes, "ice-pwd")
	if len(d.MediaDescriptions) > 0 {
		m := d.MediaDescriptions[0]
		if ufrag == "" {
			ufrag, pwd = attr(m.Attributes, "ice-ufrag"), attr(m.Attributes, "ice-pwd")
		}
		fmt.Fprintf(&b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", ufrag, pwd)
		fmt.Fprintf(&b, "m=%s 9 %s %s\r\n", m.MediaName.Media, strings.Join(m.MediaName.Protos, "/"), strings.Join(m.MediaName.Formats, " "))
		fmt.Fprintf(&b, "a=mid:%s\r\n", attr(m.Attributes, "mid"))
		for _, a := range m.Attributes {
			if a.Key == "candidate" {
				fmt.Fprintf(&b, "a=candidate:%s\r\n", a.Value)
			}
		}
		b.WriteString("a=end-of-candidates\r\n")
	}
	return b.String(), nil
}

func attr(attrs []sdp.Attribute, key string) string {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

// remoteUfrag returns the ICE username fragment of the applied offer.
func remoteUfrag(pc *webrtc.PeerConnection) string {
	remote := pc.RemoteDescription()
	if remote == nil {
		return ""
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(remote.SDP); err != nil {
		return ""
	}
	if u := attr(d.Attributes, "ice-ufrag"); u != "" {
		return u
	}
	for _, m := range d.MediaDescriptions {
		if u := attr(m.Attributes, "ice-ufrag"); u != "" {
			return u
		}
	}
	return ""
}
