package whip

import (
	"crypto/rand"
	"encoding/hex"
)

// randomID returns 128 random bits, hex encoded: session IDs must not be
// guessable, since the resource URL is the only handle on a session.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

func newETag() string { return `"` + randomID()[:16] + `"` }
