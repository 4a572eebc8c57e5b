package whip

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/focus-sfu/focus/rtc"
)

// MaxBody bounds every request body.
const MaxBody = 64 << 10

// maxRoomLen bounds room names.
const maxRoomLen = 128

// httpError is a rejection with its status and a reason for the body.
type httpError struct {
	status int
	reason string
	header http.Header
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.status, e.reason) }

func reject(status int, format string, args ...any) *httpError {
	return &httpError{status: status, reason: fmt.Sprintf(format, args...)}
}

// validRoom accepts 1-128 characters of letters, digits and "-._~".
func validRoom(room string) error {
	if room == "" {
		return errors.New("room name is empty")
	}
	if len(room) > maxRoomLen {
		return fmt.Errorf("room name is longer than %d characters", maxRoomLen)
	}
	for _, c := range room {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return fmt.Errorf("room name has a forbidden character %q (allowed: letters, digits, - _ . ~)", c)
		}
	}
	return nil
}

// readBody checks the content type and reads a bounded body.
func readBody(w http.ResponseWriter, r *http.Request, wantType string) ([]byte, *httpError) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(ct, wantType) {
		return nil, reject(http.StatusUnsupportedMediaType, "Content-Type must be %s", wantType)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, reject(http.StatusRequestEntityTooLarge, "body is larger than %d bytes", MaxBody)
		}
		return nil, reject(http.StatusBadRequest, "read body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, reject(http.StatusBadRequest, "body is empty")
	}
	return body, nil
}

// offerError maps an rtc.CheckOffer error to a rejection.
func offerError(err error) *httpError {
	switch {
	case errors.Is(err, rtc.ErrUnsupportedCodecs):
		return reject(http.StatusUnprocessableEntity, "%v (supported: opus, VP8, VP9, H264, AV1)", err)
	default:
		return reject(http.StatusBadRequest, "%v", err)
	}
}

// iceServerLinks formats ICE servers as RFC 9725 Link headers.
func iceServerLinks(servers []rtc.ICEServer) []string {
	var out []string
	for _, s := range servers {
		for _, u := range s.URLs {
			l := fmt.Sprintf("<%s>; rel=\"ice-server\"", u)
			if s.Username != "" || s.Credential != "" {
				l += fmt.Sprintf("; username=%q; credential=%q; credential-type=\"password\"", s.Username, s.Credential)
			}
			out = append(out, l)
		}
	}
	return out
}

// cors writes the CORS headers for an allowed origin.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	allowed := ""
	for _, o := range s.opts.CORSOrigins {
		if o == "*" {
			allowed = "*"
			break
		}
		if strings.EqualFold(o, origin) {
			allowed = origin
			break
		}
	}
	if allowed == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", allowed)
	if allowed != "*" {
		h.Add("Vary", "Origin")
	}
	h.Set("Access-Control-Expose-Headers", "Location, Link, ETag, Accept-Patch, Accept-Post, Retry-After, WWW-Authenticate")
}
