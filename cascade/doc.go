// Package cascade relays tracks between foci over WebRTC trunks.
//
// A conference may span several foci of a mesh (package mesh). Each focus
// publishes its holdings (the conferences, participants and tracks
// connected to it) in the mesh directory. For every local conference that
// another focus also holds, the cascade joins one proxy participant per
// remote participant and publishes its tracks, so the local front-ends
// show them like any other. A proxy track has its origin's simulcast
// layers and carries no media until someone here wants it: the core's
// DemandChanged event then makes the cascade pull each layer wanted
// (every layer up to the highest any local subscriber needs) from its
// origin focus over a trunk, once, however many local subscribers want
// it.
//
// The nouns:
//
//	trunk     one PeerConnection between two foci, in one direction: the
//	          puller receives, the exporter sends. Control travels on its
//	          data channel "trunk" as JSON messages (message.go).
//	proxy     a local participant (ParticipantInfo.Origin set to the
//	          remote node's name) standing for a participant of another
//	          focus, with one proxy track per remote track.
//	pull      the subscription of one layer of a proxy track over the
//	          trunk to its origin focus.
//	export    the exporter's side of a pull: a down track of a hidden
//	          viewer participant, capped at the pulled layer, bound to
//	          the trunk with rtc.NewLocalTrack as a track of its own.
//	holdings  what this focus tells the mesh it holds.
//
// Signalling between foci is one signed HTTP request (sign.go): the
// puller POSTs its offer to the exporter's /cascade/v1/trunk and gets the
// answer back. The puller dials from a port of its own (Options.PullEngine),
// so that two foci pulling from each other use two distinct pairs of ports. After that, only the exporter offers (over the data
// channel), so there is no glare. Both sides ping every second; a trunk
// that hears nothing for three seconds is dead, and the proxies it fed
// are removed until a new trunk to that focus is up.
//
// A track whose owner has an Origin is never exported: what arrived over
// a trunk never leaves over another, so a full mesh has no loops.
package cascade
