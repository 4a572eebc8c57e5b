package cascade

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// trunkPost sends body to n's trunk endpoint, signed as node at ts with
// secret (nil: unsigned), after edit changes the request if not nil.
func trunkPost(t *testing.T, n *node, node string, secret []byte, ts time.Time, body []byte, edit func(*http.Request)) (*http.Response, errorBody) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, n.url+trunkPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != nil {
		signRequest(req, secret, node, trunkPath, body, ts)
	}
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e errorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Errorf("status %d with a body that is not JSON: %q", resp.StatusCode, b)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("status %d with Content-Type %q", resp.StatusCode, ct)
		}
	}
	return resp, e
}

// TestTrunkRequestRefused: what the trunk endpoint refuses, with which
// status and errcode, each with a log line and a count.
func TestTrunkRequestRefused(t *testing.T) {
	m := newFakeMesh()
	a := startNode(t, m, "a")
	good, _ := json.Marshal(trunkRequest{Version: protocolVersion, Offer: "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"})
	now := time.Now()

	var replayed *http.Request
	cases := []struct {
		name    string
		node    string
		secret  []byte
		ts      time.Time
		body    []byte
		edit    func(*http.Request)
		status  int
		errcode string
		reason  string
	}{
		{name: "unsigned", node: "b", body: good, status: 401, errcode: errUnauthorized, reason: "missing X-Focus-Node"},
		{name: "wrong secret", node: "b", secret: []byte("another secret of enough bytes"), ts: now, body: good, status: 401, errcode: errUnauthorized, reason: "bad signature"},
		{name: "stale", node: "b", secret: testSecret, ts: now.Add(-31 * time.Second), body: good, status: 401, errcode: errUnauthorized, reason: "stale timestamp"},
		{name: "from the future", node: "b", secret: testSecret, ts: now.Add(31 * time.Second), body: good, status: 401, errcode: errUnauthorized, reason: "stale timestamp"},
		{name: "body changed", node: "b", secret: testSecret, ts: now, body: good, status: 401, errcode: errUnauthorized, reason: "bad signature",
			edit: func(r *http.Request) {
				b := append(bytes.Clone(good), ' ')
				r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
			}},
		{name: "other sender", node: "b", secret: testSecret, ts: now, body: good, status: 401, errcode: errUnauthorized, reason: "bad signature",
			edit: func(r *http.Request) { r.Header.Set(headerNode, "c") }},
		{name: "bad nonce", node: "b", secret: testSecret, ts: now, body: good, status: 401, errcode: errUnauthorized, reason: "X-Focus-Nonce",
			edit: func(r *http.Request) { r.Header.Set(headerNonce, "xyz") }},
		{name: "first of a replay", node: "b", secret: testSecret, ts: now, body: []byte(`{"version":1}`), status: 400, errcode: errBadJSON, reason: "no offer",
			edit: func(r *http.Request) { replayed = r.Clone(r.Context()) }},
		{name: "replayed", node: "b", body: []byte(`{"version":1}`), status: 401, errcode: errUnauthorized, reason: "replayed nonce",
			edit: func(r *http.Request) { r.Header = replayed.Header.Clone() }},
		{name: "not JSON", node: "b", secret: testSecret, ts: now, body: []byte("v=0"), status: 400, errcode: errNotJSON},
		{name: "trailing data", node: "b", secret: testSecret, ts: now, body: append(bytes.Clone(good), []byte("{}")...), status: 400, errcode: errNotJSON},
		{name: "wrong type", node: "b", secret: testSecret, ts: now, body: []byte(`{"version":"1","offer":"x"}`), status: 400, errcode: errBadJSON},
		{name: "other version", node: "b", secret: testSecret, ts: now, body: []byte(`{"version":2,"offer":"x"}`), status: 400, errcode: errBadJSON, reason: "version 2"},
		{name: "no data channel", node: "b", secret: testSecret, ts: now, body: []byte(`{"version":1,"offer":"v=0\r\n"}`), status: 400, errcode: errBadJSON, reason: "no data channel"},
		{name: "bad SDP", node: "b", secret: testSecret, ts: now, body: good, status: 400, errcode: errBadJSON, reason: "offer was refused"},
		{name: "from itself", node: "a", secret: testSecret, ts: now, body: good, status: 409, errcode: errConflict},
		{name: "too large", node: "b", secret: testSecret, ts: now, body: bytes.Repeat([]byte("x"), maxBody+1), status: 413, errcode: errTooLarge},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := a.cascade.Stats().RefusedRequests
			resp, e := trunkPost(t, a, tc.node, tc.secret, tc.ts, tc.body, tc.edit)
			if resp.StatusCode != tc.status || e.Errcode != tc.errcode || !strings.Contains(e.Error, tc.reason) {
				t.Errorf("status %d %s %q; want %d %s containing %q", resp.StatusCode, e.Errcode, e.Error, tc.status, tc.errcode, tc.reason)
			}
			if got := a.cascade.Stats().RefusedRequests; got != before+1 {
				t.Errorf("refused requests %d → %d", before, got)
			}
			if n := strings.Count(a.log.String(), `"message":"trunk request refused"`); n != i+1 {
				t.Errorf("%d refusals logged after %d requests", n, i+1)
			}
		})
	}

	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, trunkPath},
		{http.MethodPost, "/cascade/v1/other"},
	} {
		req, _ := http.NewRequest(tc.method, a.url+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[string]int{http.MethodGet: 405, http.MethodPost: 404}[tc.method]; resp.StatusCode != want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, want)
		}
	}
}

func TestVerifier(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	v := newVerifier(testSecret, func() time.Time { return now })
	sign := func(ts time.Time) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, "http://x"+trunkPath, nil)
		signRequest(req, testSecret, "b", trunkPath, []byte("body"), ts)
		return req
	}
	req := sign(now.Add(-29 * time.Second))
	if node, err := v.verify(req, trunkPath, []byte("body")); err != nil || node != "b" {
		t.Fatalf("fresh request: %q %v", node, err)
	}
	if _, err := v.verify(req, trunkPath, []byte("body")); err == nil || !strings.Contains(err.Error(), "replayed") {
		t.Errorf("the same request again: %v", err)
	}
	// The nonce is forgotten only once its timestamp can no longer pass.
	now = now.Add(nonceTTL + time.Second)
	if _, err := v.verify(req, trunkPath, []byte("body")); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("the same request a minute later: %v", err)
	}
	if _, err := v.verify(sign(now), "/cascade/v1/other", []byte("body")); err == nil {
		t.Error("a signature for another endpoint was accepted")
	}
}
