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
// /api/rooms reachable from other hosts, and refuses an unguarded
// /debug/pprof/ there.
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
	if admin := adminListen(cfg); cfg.Admin.Token == "" && !isLoopback(admin) {
		if cfg.Admin.PProf {
			return &config.Error{
				Key: "admin.pprof",
				Problem: fmt.Sprintf("the admin routes are on %q, which is not a loopback address, and admin.token is empty, "+
					"so anyone who can reach it could profile the focus; set admin.token, put admin.listen on 127.0.0.1, "+
					"or turn admin.pprof off", admin),
			}
		}
		log.Warn().Str("listen", admin).
			Msg("admin.token is empty and the admin routes are reachable from other hosts; /api/rooms lists every room and session")
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
