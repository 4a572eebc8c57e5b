// Package config loads, defaults and validates the focus configuration file.
//
// A file is strict: unknown keys, wrongly typed values and duplicate keys are
// errors naming the full key path, so a typo can never silently fall back to
// a default. Every key is documented in config.sample.yaml and
// docs/configuration.md.
package config

// Config is the whole focus configuration. The yaml tags are the file's keys.
type Config struct {
	// Listen is the main HTTP listener (host:port).
	Listen string `yaml:"listen"`
	Admin  Admin  `yaml:"admin"`
	WebRTC WebRTC `yaml:"webrtc"`
	CORS   CORS   `yaml:"cors"`
	WHIP   WHIP   `yaml:"whip"`
	Limits Limits `yaml:"limits"`
	Media  Media  `yaml:"media"`
	Log    Log    `yaml:"log"`
	Matrix Matrix `yaml:"matrix"`
	// LiveKit is the Element Call front-end (config/livekit.go).
	LiveKit LiveKit `yaml:"livekit"`
	// Mesh joins foci into a cascade (config/mesh.go).
	Mesh Mesh `yaml:"mesh"`
	// SharedRooms put WHIP/WHEP rooms into LiveKit rooms (config/shared.go).
	SharedRooms []SharedRoom `yaml:"shared_rooms"`
}

// Admin configures the admin routes (/api/rooms, /metrics, /debug/pprof).
type Admin struct {
	// Listen is an optional separate listener (host:port) for the admin
	// routes. Empty serves them on the main listener.
	Listen string `yaml:"listen"`
	// Token, when set, must be presented as a bearer token on the admin
	// routes.
	Token string `yaml:"token"`
	// Metrics serves Prometheus metrics on /metrics.
	Metrics bool `yaml:"metrics"`
	// PProf serves the Go profiler on /debug/pprof/. Off by default.
	PProf bool `yaml:"pprof"`
}

// WebRTC configures the media engine.
type WebRTC struct {
	// UDPPort carries all media. 0 picks an ephemeral port.
	UDPPort int `yaml:"udp_port"`
	// BindAddress is the UDP bind IP. Empty uses the host of Listen.
	BindAddress string `yaml:"bind_address"`
	// PublicIPs are advertised instead of the bound address (NAT 1:1).
	PublicIPs []string `yaml:"public_ips"`
	// ICELite makes the focus an ICE-lite agent.
	ICELite bool `yaml:"ice_lite"`
	// IncludeLoopback advertises loopback candidates even when the focus is
	// not bound to loopback.
	IncludeLoopback bool `yaml:"include_loopback"`
	// ICEServers are handed to clients in Link headers.
	ICEServers []ICEServer `yaml:"ice_servers"`
}

// ICEServer is one STUN or TURN server offered to clients.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}

// CORS configures cross-origin access to the HTTP API.
type CORS struct {
	// AllowedOrigins lists origins (scheme://host[:port]) or "*".
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// WHIP configures the WHIP/WHEP front-end.
type WHIP struct {
	// InsecureOpen allows running without tokens on a non-loopback listener.
	InsecureOpen bool `yaml:"insecure_open"`
	// Tokens are the bearer tokens accepted. Empty means open access.
	Tokens []Token `yaml:"tokens"`
}

// Token is one WHIP/WHEP bearer token and what it may do.
type Token struct {
	Token string `yaml:"token"`
	// Rooms are path.Match globs on room names.
	Rooms   []string `yaml:"rooms"`
	Publish bool     `yaml:"publish"`
	View    bool     `yaml:"view"`
}

// Limits caps concurrent sessions. 0 means unlimited.
type Limits struct {
	SessionsPerRoom int `yaml:"sessions_per_room"`
	SessionsPerIP   int `yaml:"sessions_per_ip"`
	SessionsTotal   int `yaml:"sessions_total"`
}

// Log configures logging.
type Log struct {
	// Level is one of trace, debug, info, warn, error.
	Level string `yaml:"level"`
	// Format is console (human) or json.
	Format string `yaml:"format"`
}

// Default returns the configuration used when no file is given: a standalone
// focus on loopback, open to anyone who can reach it.
func Default() Config {
	return Config{
		Listen: "127.0.0.1:8080",
		Admin:  Admin{Metrics: true},
		WebRTC: WebRTC{UDPPort: 7882},
		CORS:   CORS{AllowedOrigins: []string{"*"}},
		Limits: Limits{
			SessionsPerRoom: 200,
			SessionsPerIP:   100,
			SessionsTotal:   1000,
		},
		Media:   defaultMedia(),
		Log:     Log{Level: "info", Format: "console"},
		Matrix:  defaultMatrix(),
		LiveKit: defaultLiveKit(),
		Mesh:    defaultMesh(),
	}
}
