package server

import (
	"testing"

	"github.com/focus-sfu/focus/mesh"
)

func TestPlaceRoom(t *testing.T) {
	node := func(name string, self bool, state mesh.NodeState, participants int, url string) mesh.NodeInfo {
		return mesh.NodeInfo{Name: name, Self: self, State: state, Load: mesh.Load{Participants: participants}, Identity: mesh.Identity{LiveKitURL: url}}
	}
	holds := map[string][]mesh.Conference{
		"b": {{Names: []string{"whip:x", "lk:room"}}},
		"c": {{Names: []string{"lk:room"}}},
		"d": {{Names: []string{"lk:busy"}}},
	}
	holdings := func(n string) []mesh.Conference { return holds[n] }
	tests := []struct {
		name  string
		nodes []mesh.NodeInfo
		conf  string
		want  string
	}{
		{"alone", []mesh.NodeInfo{node("a", true, mesh.StateAlive, 5, "")}, "lk:room", ""},
		{"where the room lives", []mesh.NodeInfo{
			node("a", true, mesh.StateAlive, 0, "ws://a"), node("b", false, mesh.StateAlive, 9, "ws://b"),
		}, "lk:room", "ws://b"},
		{"here when this node holds it too", []mesh.NodeInfo{
			node("b", false, mesh.StateAlive, 0, "ws://b"), node("c", true, mesh.StateAlive, 9, "ws://c"),
		}, "lk:room", ""},
		{"not on a dead holder", []mesh.NodeInfo{
			node("a", true, mesh.StateAlive, 3, "ws://a"), node("b", false, mesh.StateDead, 0, "ws://b"), node("e", false, mesh.StateAlive, 1, "ws://e"),
		}, "lk:room", "ws://e"},
		{"a new room on the least loaded", []mesh.NodeInfo{
			node("a", true, mesh.StateAlive, 4, "ws://a"), node("d", false, mesh.StateAlive, 2, "ws://d"), node("e", false, mesh.StateAlive, 1, "ws://e"),
		}, "lk:new", "ws://e"},
		{"a tie stays here", []mesh.NodeInfo{
			node("a", true, mesh.StateAlive, 1, "ws://a"), node("e", false, mesh.StateAlive, 1, "ws://e"),
		}, "lk:new", ""},
		{"not on a node without LiveKit", []mesh.NodeInfo{
			node("a", true, mesh.StateAlive, 4, "ws://a"), node("b", false, mesh.StateAlive, 0, ""),
		}, "lk:room", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := placeRoom(tt.nodes, holdings, tt.conf); got != tt.want {
				t.Errorf("placeRoom = %q, want %q", got, tt.want)
			}
		})
	}
}
