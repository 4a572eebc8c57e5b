// Package mesh is the cluster of foci: a hashicorp/memberlist gossip
// ring and the directory built on it (which foci exist, how loaded each
// one is, and which conferences and tracks each one holds).
package mesh

import _ "github.com/hashicorp/memberlist" // pinned until the package uses it
