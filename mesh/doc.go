// Package mesh is the cluster of foci: a hashicorp/memberlist gossip ring
// and the directory built on it, which says which foci exist, how loaded
// each one is, and which conferences and tracks each one holds.
//
// # What travels where
//
// Each node owns one state: its identity, its load and its holdings (the
// conferences and tracks of participants connected to it). The state has a
// version that only grows: it starts from the wall clock in nanoseconds
// when the node is made, so a restarted node with the same name outranks
// what the others remember of it, and every change adds one. A receiver
// keeps a node's state only when the version is higher than the one it
// holds, so stale news, duplicates and reordering are harmless.
//
//   - Node metadata (at most 512 bytes, memberlist's limit) carries the
//     name, the identity and the version. It is a hint: a node that sees a
//     member whose metadata names a version newer than the state it holds
//     asks that member for its state.
//   - A change is gossiped at once. An encoded state of at most 1 KiB is
//     queued as a memberlist broadcast, and every node that accepts it
//     passes it on, so it spreads like memberlist's own messages. A larger
//     one is sent over TCP (memberlist's SendReliable) to every alive
//     member. Load changes are gossiped at most once a second.
//   - Every 10 s, and on join, memberlist's push/pull exchanges the full
//     state of every node each side believes alive, which heals anything
//     the broadcasts missed.
//   - A dead or left node's state is dropped. A node that closes announces
//     it first (a "left" state sent to every member), so the others drop
//     its holdings at once and report it as left rather than dead.
//
// # Failure detection
//
// memberlist's LAN defaults take about 5 to 25 s to declare a killed node
// dead; the cascade wants about 4 s on a LAN, so New tunes them:
//
//   - ProbeInterval 400 ms, ProbeTimeout 200 ms: each node probes one
//     other node every 400 ms and gives a direct ping 200 ms (indirect
//     pings and a TCP ping get the rest of the interval).
//   - SuspicionMult 3, SuspicionMaxTimeoutMult 2: a suspect is declared
//     dead after 3 × 400 ms = 1.2 s once another node confirms the
//     suspicion, and after at most 2.4 s without confirmation (both scaled
//     by log10 of the node count beyond ten nodes).
//   - GossipInterval 100 ms: the verdict reaches the other nodes within a
//     few hundred milliseconds.
//
// So a killed node is reported dead by the others within about 1.5 to 4 s
// on loopback or a LAN: up to a round of probes until someone probes it,
// one probe interval to fail, then the suspicion timeout. A node that is
// only slow refutes the suspicion itself, as memberlist does. The push/pull
// interval is 10 s, TCP exchanges time out after 3 s, and a dead node's
// name may be taken by a new address after 1 s (a restarted node on a new
// port).
//
// memberlist (v0.7.0) reports joins, leaves and metadata updates, but no
// event for a suspect, and the State of the nodes it hands out is never
// filled in. So the directory keeps its own view from the events; it
// tells a leave from a death by the farewell above, and reports a node
// suspect when memberlist logs that a probe of it failed, until the node
// is declared dead or the longest suspicion has passed.
//
// Gossip carries the label "focus-mesh", so a Consul or Serf agent on the
// same port does not mix in. memberlist's own log goes to Config.Log at
// debug level.
//
// memberlist does not reconnect to nodes it declared dead, so after a
// partition heals the two sides would stay apart. Start therefore re-joins,
// every Config.RejoinInterval, each seed address that is not an alive
// member.
package mesh
