package config

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// MinTrunkSecretLen is the shortest mesh.trunk_secret accepted: it keys the
// HMAC-SHA256 that signs trunk requests between foci.
const MinTrunkSecretLen = 32

// Mesh configures cascading: the memberlist mesh of foci (mesh/) and the
// WebRTC trunks between them (cascade/). See docs/cascade.md.
type Mesh struct {
	// Enabled joins this focus to a mesh.
	Enabled bool `yaml:"enabled"`
	// NodeName names this focus in the mesh; unique among its nodes.
	// Empty uses the host name.
	NodeName string `yaml:"node_name"`
	// Bind is the gossip address (TCP and UDP, host:port).
	Bind string `yaml:"bind"`
	// Advertise is the gossip address other foci dial, when it differs
	// from Bind (NAT, 0.0.0.0). Empty uses Bind.
	Advertise string `yaml:"advertise"`
	// Seeds are foci to join through (host:port); a host name that
	// resolves to several addresses means all of them.
	Seeds []string `yaml:"seeds"`
	// GossipKey encrypts gossip: base64 of 16, 24 or 32 random bytes, the
	// same on every node. Empty gossips in plain text (a warning is logged).
	GossipKey string `yaml:"gossip_key"`
	// TrunkSecret signs the HTTP requests that set up trunks; the same on
	// every node. Required when enabled.
	TrunkSecret string `yaml:"trunk_secret"`
	// TrunkURL is the base URL other foci reach this focus's trunk
	// endpoint at. Empty means http:// + the main listener's address.
	TrunkURL string `yaml:"trunk_url"`
	// RejoinInterval is how often the seeds that are not alive members
	// are joined again, so that a healed partition heals the mesh too.
	RejoinInterval time.Duration `yaml:"rejoin_interval"`
	// TrunkIdleTimeout is how long a trunk that carries no track stays
	// open for the next one before it is closed.
	TrunkIdleTimeout time.Duration `yaml:"trunk_idle_timeout"`
	// TrunkTLS, when its listen address is set, serves trunk requests
	// over mutual TLS on a listener of their own.
	TrunkTLS TrunkTLS `yaml:"trunk_tls"`
}

// TrunkTLS configures mutual TLS between foci for trunk requests, on top
// of their signatures.
type TrunkTLS struct {
	// Listen is the TLS listener (host:port) that serves the trunk
	// endpoint instead of the main listener. Empty turns mutual TLS off.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are this focus's certificate and key (PEM),
	// presented both as a server and as a client.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile holds the certificates (PEM) that sign every focus's
	// certificate: the only ones trusted either way.
	CAFile string `yaml:"ca_file"`
}

func defaultMesh() Mesh {
	return Mesh{
		Bind:             "127.0.0.1:7946",
		Seeds:            []string{},
		RejoinInterval:   15 * time.Second,
		TrunkIdleTimeout: 30 * time.Second,
	}
}

// NodeNameOrDefault is NodeName, or the host name when it is empty.
func (m Mesh) NodeNameOrDefault() string {
	if m.NodeName != "" {
		return m.NodeName
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "focus"
	}
	return h
}

// TrunkURLOrDefault is TrunkURL, or else http:// + listenAddr, or
// https:// + the trunk TLS listener's address with mutual TLS. The
// addresses are those the listeners are bound to.
func (m Mesh) TrunkURLOrDefault(listenAddr, tlsAddr string) string {
	switch {
	case m.TrunkURL != "":
		return m.TrunkURL
	case m.TrunkTLS.Listen != "":
		return "https://" + tlsAddr
	}
	return "http://" + listenAddr
}

// GossipKeyBytes decodes GossipKey; nil when it is empty. Validate has
// checked it.
func (m Mesh) GossipKeyBytes() []byte {
	if m.GossipKey == "" {
		return nil
	}
	b, _ := base64.StdEncoding.DecodeString(m.GossipKey)
	return b
}

// validate checks the section. Values that are set are always checked;
// the trunk secret is required only when Enabled.
func (m Mesh) validate() error {
	if err := checkHostPort("mesh.bind", m.Bind); err != nil {
		return err
	}
	if m.Advertise != "" {
		if err := checkHostPort("mesh.advertise", m.Advertise); err != nil {
			return err
		}
	}
	for i, s := range m.Seeds {
		if err := checkHostPort(indexKey("mesh.seeds", i), s); err != nil {
			return err
		}
	}
	if m.GossipKey != "" {
		b, err := base64.StdEncoding.DecodeString(m.GossipKey)
		if err != nil {
			return errorf("mesh.gossip_key", "is not base64 (e.g. openssl rand -base64 32)")
		}
		if n := len(b); n != 16 && n != 24 && n != 32 {
			return errorf("mesh.gossip_key", fmt.Sprintf("decodes to %d bytes; want 16, 24 or 32 (e.g. openssl rand -base64 32)", n))
		}
	}
	if m.TrunkSecret != "" && len(m.TrunkSecret) < MinTrunkSecretLen {
		return errorf("mesh.trunk_secret", fmt.Sprintf(
			"is %d characters; use at least %d (e.g. openssl rand -hex 32)", len(m.TrunkSecret), MinTrunkSecretLen))
	}
	if m.Enabled && m.TrunkSecret == "" {
		return errorf("mesh.trunk_secret", "must be set when mesh.enabled is true (e.g. openssl rand -hex 32)")
	}
	if m.TrunkURL != "" {
		u, err := url.Parse(m.TrunkURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errorf("mesh.trunk_url", fmt.Sprintf("%q is not an http(s):// URL", m.TrunkURL))
		}
	}
	if m.RejoinInterval < time.Second {
		return errorf("mesh.rejoin_interval", fmt.Sprintf("%s is under 1s", m.RejoinInterval))
	}
	if err := m.TrunkTLS.validate(); err != nil {
		return err
	}
	if m.TrunkTLS.Listen != "" && m.TrunkURL != "" && !strings.HasPrefix(m.TrunkURL, "https://") {
		return errorf("mesh.trunk_url", fmt.Sprintf("%q must be https:// with mesh.trunk_tls", m.TrunkURL))
	}
	if m.TrunkIdleTimeout < time.Second {
		return errorf("mesh.trunk_idle_timeout", fmt.Sprintf("%s is under 1s", m.TrunkIdleTimeout))
	}
	return nil
}

func (t TrunkTLS) validate() error {
	if t.Listen == "" {
		if t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" {
			return errorf("mesh.trunk_tls.listen", "must be set with the certificate files (host:port)")
		}
		return nil
	}
	if err := checkHostPort("mesh.trunk_tls.listen", t.Listen); err != nil {
		return err
	}
	for _, f := range []struct{ key, path string }{
		{"mesh.trunk_tls.cert_file", t.CertFile},
		{"mesh.trunk_tls.key_file", t.KeyFile},
		{"mesh.trunk_tls.ca_file", t.CAFile},
	} {
		if f.path == "" {
			return errorf(f.key, "must be set with mesh.trunk_tls.listen")
		}
	}
	return nil
}
