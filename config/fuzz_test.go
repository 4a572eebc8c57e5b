package config_test

import (
	"errors"
	"os"
	"testing"

	"github.com/focus-sfu/focus/config"
)

// FuzzLoad feeds arbitrary bytes through the file parser (Load is a file read
// followed by Parse). It must never panic, must fail only with a
// *config.Error, and must only ever return a config that validates.
func FuzzLoad(f *testing.F) {
	sample, err := os.ReadFile("../config.sample.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	for _, s := range []string{
		"",
		"~",
		"listen: \"127.0.0.1:0\"\n",
		"webrtc:\n  udp_port: 70000\n",
		"webrtc:\n  udp_prot: 1\n",
		"whip:\n  tokens:\n    - {token: a, rooms: [\"*\"], publish: true}\n",
		"whip:\n  tokens:\n    - {token: a, rom: [\"*\"]}\n",
		"limits: {sessions_per_ip: lots}\n",
		"cors:\n  allowed_origins: &x [*x]\n",
		"a: &a [*a, *a]\nb: *a\n",
		"log:\n  <<: {level: info}\n",
		"? [a]\n: b\n",
		"- 1\n- 2\n",
		"x: 1\n---\ny: 2\n",
		"listen: [\n",
		"webrtc: {ice_servers: [{urls: [\"turn:h?transport=tcp\"], username: u}]}\n",
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse error %v is a %T, want *config.Error", err, err)
			}
			if ce.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse returned a config that fails Validate: %v", err)
		}
	})
}
