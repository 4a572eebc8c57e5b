package server

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/config"
)

// checkExposure enforces the one rule that keeps a default focus from being
// an open relay: without WHIP tokens, anyone who can reach the listener can
// publish and watch, so the listener must be loopback unless the operator
// opted in with whip.insecure_open. It also warns about an unguarded
// /api/rooms reachable from other hosts.
func checkExposure(cfg config.Config, log zerolog.Logger) error {
	if len(cfg.WHIP.Tokens) == 0 && !isLoopback(cfg.Listen) {
		if !cfg.WHIP.InsecureOpen {
			return &config.Error{
				Key: "listen",
				Problem: fmt.Sprintf("%q is not a loopback address and whip.tokens is empty, "+
					"so anyone who can reach it could publish and watch; add whip.tokens, "+
					"listen on 127.0.0.1, or set whip.insecure_open (--insecure-open) to accept that", cfg.Listen),
			}
		}
		log.Warn().Str("listen", cfg.Listen).
			Msg("INSECURE: no whip.tokens on a non-loopback listener (insecure_open is set); ANYONE who can reach this port can publish and watch")
	}
	if cfg.Admin.Token == "" {
		adminListen := cfg.Listen
		if cfg.Admin.Listen != "" {
			adminListen = cfg.Admin.Listen
		}
		if !isLoopback(adminListen) {
			log.Warn().Str("listen", adminListen).
				Msg("admin.token is empty and /api/rooms is reachable from other hosts; it lists every room and session")
		}
	}
	return nil
}

// isLoopback reports whether a host:port names only loopback: 127.0.0.0/8,
// ::1 or "localhost". An empty host means every interface.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
