package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/focustest"
)

// testPKI is a throwaway CA and the certificates it signs, as files.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "focus test mesh CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key}
	p.CAFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate for a focus named name on 127.0.0.1, good
// for both ends of a TLS connection, and returns its cert and key files.
func (p *testPKI) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
}

// TestCascadeMutualTLS: with mesh.trunk_tls the trunk endpoint moves to a
// TLS listener of its own that wants a client certificate from the mesh's
// CA. Two foci trunk over it (a WHIP publisher on a is watched on b); a
// client without a certificate cannot even finish the handshake, and the
// main listener no longer serves trunk requests.
func TestCascadeMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pki := newTestPKI(t)
	tlsSection := func(name string) (string, int) {
		cert, key := pki.issue(t, name)
		port := focustest.FreePort(t)
		return fmt.Sprintf(`  trunk_tls:
    listen: "127.0.0.1:%d"
    cert_file: %q
    key_file: %q
    ca_file: %q
`, port, cert, key, pki.CAFile), port
	}
	aTLS, aPort := tlsSection("a")
	bTLS, _ := tlsSection("b")
	a := startCascadeNodeWith(t, "a", nodeConfig{Mesh: aTLS})
	b := startCascadeNodeWith(t, "b", nodeConfig{Mesh: bTLS}, a.gossip)
	waitMesh(ctx, t, []*cascadeNode{a, b}, "a", "b")

	pa := publish(ctx, t, a, "tls")
	waitMedia(ctx, t, "viewer on b of a, over a mutual-TLS trunk", view(ctx, t, b, "tls", publisherID(pa)), cascadeMedia)

	// No client certificate: the handshake fails.
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := anon.Post(fmt.Sprintf("https://127.0.0.1:%d/cascade/v1/trunk", aPort), "application/json", strings.NewReader(`{}`))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a trunk request without a client certificate got %s, want a failed handshake", resp.Status)
	}
	// The main listener does not serve the trunk endpoint.
	resp, err = http.Post(a.URL+"/cascade/v1/trunk", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusBadRequest {
		t.Fatalf("the main listener answers trunk requests (%s) while mutual TLS is on", resp.Status)
	}
}
