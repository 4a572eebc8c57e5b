package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"

	"github.com/focus-sfu/focus/config"
)

// trunkTLS is mutual TLS for trunk requests (mesh.trunk_tls): the
// listener that serves the trunk endpoint, and the client side every
// trunk request this focus makes uses. Both present this focus's
// certificate and trust only the mesh's CA.
type trunkTLS struct {
	ln     net.Listener // TLS, client certificates required
	client *tls.Config
}

// newTrunkTLS loads the certificates and binds the listener. Unreadable
// or unusable files are configuration errors naming their key.
func newTrunkTLS(c config.TrunkTLS) (*trunkTLS, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, &config.Error{Key: "mesh.trunk_tls.cert_file", Problem: "cannot load the certificate and key", Err: err}
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, &config.Error{Key: "mesh.trunk_tls.ca_file", Problem: "cannot read it", Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &config.Error{Key: "mesh.trunk_tls.ca_file", Problem: "holds no PEM certificate"}
	}
	server := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("server: listen %s (mesh.trunk_tls.listen): %w", c.Listen, err)
	}
	return &trunkTLS{
		ln: tls.NewListener(ln, server),
		client: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			RootCAs:      pool,
		},
	}, nil
}
