package cascade

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Trunk requests are signed with a secret every focus of the mesh shares.
// The signature covers the method, the endpoint, the sending node, a
// timestamp, a nonce and the body's hash; the exporter refuses a stale
// timestamp and a nonce it has seen, so a captured request cannot be
// replayed.
const (
	headerNode      = "X-Focus-Node"
	headerTimestamp = "X-Focus-Timestamp"
	headerNonce     = "X-Focus-Nonce"
	headerSignature = "X-Focus-Signature"

	// maxSkew is how far a request's timestamp may be from the
	// receiver's clock, either way.
	maxSkew = 30 * time.Second
	// nonceTTL is how long a nonce is remembered: longer than the
	// window of timestamps accepted (±maxSkew), so a nonce cannot come
	// back while its timestamp would still pass.
	nonceTTL = 60 * time.Second
	// nonceBytes is the length of a nonce before hex encoding.
	nonceBytes = 16
	// maxNonces bounds the replay cache. Only signed requests enter it,
	// so only a holder of the secret could fill it.
	maxNonces = 100000
	// minSecret is the shortest secret accepted.
	minSecret = 16
)

// signature computes the hex HMAC-SHA256 of a request under secret.
// path is the endpoint's path (trunkPath), not the URL the request took:
// a focus behind a proxy that rewrites paths still verifies.
func signature(secret []byte, method, path, node, timestamp, nonce string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, secret)
	for _, s := range []string{method, path, node, timestamp, nonce} {
		m.Write([]byte(s))
		m.Write([]byte{'\n'})
	}
	m.Write([]byte(hex.EncodeToString(sum[:])))
	return hex.EncodeToString(m.Sum(nil))
}

// signRequest sets the signature headers on req, whose body is body.
func signRequest(req *http.Request, secret []byte, node, path string, body []byte, now time.Time) {
	var n [nonceBytes]byte
	_, _ = rand.Read(n[:]) // crypto/rand.Read never fails on supported platforms
	nonce := hex.EncodeToString(n[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(headerNode, node)
	req.Header.Set(headerTimestamp, ts)
	req.Header.Set(headerNonce, nonce)
	req.Header.Set(headerSignature, signature(secret, req.Method, path, node, ts, nonce, body))
}

// verifier checks signed requests and remembers their nonces.
type verifier struct {
	secret []byte
	now    func() time.Time

	mu      sync.Mutex
	nonces  map[string]time.Time // nonce to when it may be forgotten
	inserts int
}

func newVerifier(secret []byte, now func() time.Time) *verifier {
	return &verifier{secret: secret, now: now, nonces: make(map[string]time.Time)}
}

// verify checks r's signature headers against body and returns the
// sending node. The error says why a request was refused, for the 401
// body and the log; it never contains the secret or the expected
// signature.
func (v *verifier) verify(r *http.Request, path string, body []byte) (string, error) {
	h := r.Header
	node, ts, nonce, sig := h.Get(headerNode), h.Get(headerTimestamp), h.Get(headerNonce), h.Get(headerSignature)
	for _, p := range []struct{ name, value string }{
		{headerNode, node}, {headerTimestamp, ts}, {headerNonce, nonce}, {headerSignature, sig},
	} {
		if p.value == "" {
			return "", fmt.Errorf("missing %s header", p.name)
		}
	}
	if len(node) > maxName {
		return "", fmt.Errorf("%s is longer than %d bytes", headerNode, maxName)
	}
	if b, err := hex.DecodeString(nonce); err != nil || len(b) != nonceBytes {
		return "", fmt.Errorf("%s is not %d hex-encoded bytes", headerNonce, nonceBytes)
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return "", fmt.Errorf("%s is not hex", headerSignature)
	}
	want, _ := hex.DecodeString(signature(v.secret, r.Method, path, node, ts, nonce, body))
	if !hmac.Equal(got, want) {
		return "", fmt.Errorf("bad signature (is the trunk secret the same on both foci?)")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%s is not unix seconds", headerTimestamp)
	}
	now := v.now()
	if d := now.Sub(time.Unix(sec, 0)); d > maxSkew || d < -maxSkew {
		return "", fmt.Errorf("stale timestamp: %v from this focus's clock, more than %v", d.Round(time.Second), maxSkew)
	}
	if !v.remember(nonce, now) {
		return "", fmt.Errorf("replayed nonce")
	}
	return node, nil
}

// remember records nonce, and reports false when it was seen already
// (or the cache is full of live nonces).
func (v *verifier) remember(nonce string, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if until, ok := v.nonces[nonce]; ok && now.Before(until) {
		return false
	}
	if len(v.nonces) >= maxNonces {
		v.prune(now)
		if len(v.nonces) >= maxNonces {
			return false
		}
	}
	v.nonces[nonce] = now.Add(nonceTTL)
	// Forget expired nonces now and then, so the map follows the
	// request rate of the last minute rather than of all time.
	if v.inserts++; v.inserts%1024 == 0 {
		v.prune(now)
	}
	return true
}

func (v *verifier) prune(now time.Time) {
	for n, until := range v.nonces {
		if !now.Before(until) {
			delete(v.nonces, n)
		}
	}
}
