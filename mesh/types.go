package mesh

import (
	"time"

	"github.com/rs/zerolog"
)

// Config configures a Node.
type Config struct {
	// NodeName names this focus; it must be unique in the mesh. Required,
	// at most 128 bytes.
	NodeName string
	// BindAddr is the IP to bind gossip (TCP and UDP) on, such as
	// "127.0.0.1". Empty means "0.0.0.0".
	BindAddr string
	// BindPort is the gossip port; 0 picks a free one (tests), which
	// Node.Addr then reports.
	BindPort int
	// AdvertiseAddr is the IP the other nodes reach this one at. Empty
	// means BindAddr, or an address memberlist picks from the interfaces
	// when BindAddr is 0.0.0.0.
	AdvertiseAddr string
	// AdvertisePort is the port the other nodes reach this one at; 0
	// means the bound port.
	AdvertisePort int
	// Seeds are the nodes to join, as "host:port". A host name that
	// resolves to several addresses means all of them.
	Seeds []string
	// GossipKey encrypts gossip (AES-GCM) when set; it must be 16, 24 or
	// 32 bytes. Nil means plain-text gossip, and New logs a warning.
	GossipKey []byte
	// RejoinInterval is how often the seeds that are not alive members
	// are joined again. Zero means 15 s.
	RejoinInterval time.Duration
	// Identity is what the other foci need to reach this one.
	Identity Identity
	Log      zerolog.Logger
}

// Identity is how a focus is reached and named.
type Identity struct {
	// TrunkURL is the base URL other foci POST trunk requests to, such as
	// "http://127.0.0.1:8080".
	TrunkURL string
	// MatrixUserID is what m.foci.active names; it may be empty.
	MatrixUserID   string
	MatrixDeviceID string
	// LiveKitURL is the URL Element Call clients open /rtc on at this
	// focus; empty when it does not serve them.
	LiveKitURL string
}

// Load is how busy a focus is.
type Load struct {
	Participants int
	// BitrateBps is the forwarded (outgoing) bit rate.
	BitrateBps uint64
	// CPU is the process's CPU use in cores (0.5 is half a core).
	CPU float64
}

// Conference is one conference a node holds. Only participants connected
// to that node are listed, never cascade proxies.
type Conference struct {
	// Names are every name of the conference (focus.Conference.Names).
	Names        []string
	Participants []Participant
}

// Participant is a participant connected to the node that holds it.
type Participant struct {
	ID       string
	Identity string
	// Role is focus.Role.String(): "member", "ingress" or "viewer".
	Role   string
	Tracks []Track
}

// Track is a track a participant publishes.
type Track struct {
	ID       string
	StreamID string
	// Kind is "audio" or "video".
	Kind string
	// Source is focus.Source.String().
	Source    string
	MimeType  string
	ClockRate uint32
	Channels  uint16
	Fmtp      string
	Muted     bool
	// Layers are the simulcast RIDs at the origin, lowest first.
	Layers []string
	// Sizes are the frame sizes of the layers at the origin, in the
	// order of Layers (one for a video track without simulcast), zero
	// where unknown. Nil when none is known, and for audio.
	Sizes []LayerSize
}

// LayerSize is the frame size of one layer of a video track, in pixels.
type LayerSize struct {
	Width, Height uint32
}

// NodeState is how a node looks from here.
type NodeState string

// Node states. Suspect is memberlist's "failed to answer a probe, not yet
// declared dead"; a suspect node still counts as alive.
const (
	StateAlive   NodeState = "alive"
	StateSuspect NodeState = "suspect"
	StateDead    NodeState = "dead"
	StateLeft    NodeState = "left"
)

// NodeInfo describes one node of the mesh as this node sees it.
type NodeInfo struct {
	Name string
	// Addr is the node's gossip address, host:port.
	Addr     string
	State    NodeState
	Self     bool
	Identity Identity
	Load     Load
	// Version is the version of the node's state this node holds; 0 when
	// it holds none (a dead or left node's state is dropped).
	Version uint64
	// Conferences is how many conferences the node holds.
	Conferences int
}

// Directory is what front-ends and the cascade read.
type Directory interface {
	// Self is this node's name.
	Self() string
	// Nodes lists the known nodes sorted by name, this one included.
	Nodes() []NodeInfo
	Node(name string) (NodeInfo, bool)
	// Holdings are the conferences a node holds: a copy the caller may
	// keep, empty unless the node is alive (suspect counts as alive).
	Holdings(node string) []Conference
	// OnChange registers fn to run after any change to what the directory
	// reports. fn runs on a goroutine of its own, once for a burst of
	// changes, soon after it. cancel stops further calls.
	OnChange(fn func()) (cancel func())
}
