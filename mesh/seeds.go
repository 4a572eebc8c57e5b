package mesh

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"
)

// splitSeed checks a seed, "host:port".
func splitSeed(s string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		return "", "", err
	}
	if host == "" {
		return "", "", errors.New("no host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", "", errors.New("port must be 1 to 65535")
	}
	return host, port, nil
}

// joinLoop joins the seeds: with backoff while this node has no other
// member, then every RejoinInterval for the seed addresses that are not
// alive members (memberlist never calls on a node it declared dead, so
// after a partition heals only this brings the two sides together).
// The loop also forgets nodes that have long been gone.
func (n *Node) joinLoop(ctx context.Context) {
	joined := make(map[string]bool) // seed address → whether its last join worked
	backoff := joinBackoffMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.done:
			return
		case <-timer.C:
		}
		n.prune(time.Now())
		n.rejoin(ctx, joined)
		wait := n.cfg.RejoinInterval
		if len(n.cfg.Seeds) > 0 && n.numNodes.Load() <= 1 {
			// Alone: keep trying, sooner.
			wait = min(backoff, n.cfg.RejoinInterval)
			backoff = min(2*backoff, n.cfg.RejoinInterval)
		} else {
			backoff = joinBackoffMin
		}
		timer.Reset(wait)
	}
}

// rejoin joins each seed address that is not an alive member.
func (n *Node) rejoin(ctx context.Context, joined map[string]bool) {
	addrs := n.seedAddrs(ctx)
	n.mu.Lock()
	alive := make(map[string]bool, len(n.members))
	for _, m := range n.members {
		if m.state == StateAlive {
			alive[m.addr()] = true
		}
	}
	n.mu.Unlock()
	for _, a := range addrs {
		if alive[a] || n.isSelf(a) {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-n.done:
			return
		default:
		}
		// Log changes only: a seed behind a virtual address is never
		// a member by that address, and is joined every time.
		was, known := joined[a]
		_, err := n.ml.Join([]string{a})
		joined[a] = err == nil
		switch {
		case err == nil && (!known || !was):
			n.log.Info().Str("seed", a).Msg("joined seed")
		case err != nil && (!known || was):
			n.log.Warn().Err(err).Str("seed", a).Msg("cannot join seed; retrying")
		case err != nil:
			n.log.Debug().Err(err).Str("seed", a).Msg("cannot join seed")
		}
	}
}

// seedAddrs resolves the seeds to addresses, every address of a name.
func (n *Node) seedAddrs(ctx context.Context) []string {
	var out []string
	seen := make(map[string]bool)
	for _, s := range n.cfg.Seeds {
		host, port, err := splitSeed(s)
		if err != nil {
			continue // New refused these
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			n.log.Warn().Err(err).Str("seed", s).Msg("cannot resolve seed")
			continue
		}
		for _, ip := range ips {
			a := net.JoinHostPort(ip, port)
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// isSelf reports whether a seed address is this node's own: its
// advertised address, or a loopback address on its port when it listens
// on every interface (one seed list for every node).
func (n *Node) isSelf(addr string) bool {
	if addr == n.addr {
		return true
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	_, selfPort, _ := net.SplitHostPort(n.addr)
	ip, bind := net.ParseIP(host), net.ParseIP(n.cfg.BindAddr)
	return port == selfPort && ip != nil && ip.IsLoopback() && bind != nil && bind.IsUnspecified()
}
