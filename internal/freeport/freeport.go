// Package freeport finds loopback ports for processes that must be told
// their port before they bind it (a mesh seed, an appservice URL that the
// homeserver reads first).
//
// A port the kernel handed out for ":0" and that was closed again lies in
// the ephemeral range, where the kernel may give it to any other socket,
// an outgoing connection included, before the intended process binds it.
// Ports here come from below that range instead, where only an explicit
// bind takes them.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
)

// Range is where ports are drawn from: above the well-known and
// registered services most hosts run, below Linux's default ephemeral
// range (32768-60999).
const (
	Low  = 20000
	High = 32000
)

// Loopback returns a port on 127.0.0.1 that is free now for both TCP and
// UDP.
func Loopback() (int, error) {
	for range 100 {
		port := Low + rand.IntN(High-Low)
		tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = tl.Close()
		if err != nil {
			continue
		}
		_ = ul.Close()
		return port, nil
	}
	return 0, errors.New("freeport: no free loopback port after 100 tries")
}
