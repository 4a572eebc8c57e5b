package mesh

import (
	"net"
	"reflect"
	"testing"

	"github.com/rs/zerolog"
)

func fuzzSeeds(f *testing.F) {
	big := state("b", 7, conf("room", "p", "q"), conf("other"))
	big.Load = wireLoad{Participants: 3, BitrateBps: 1e6, CPU: 0.5}
	left := state("c", 9)
	left.Left = true
	for _, v := range []struct {
		kind byte
		v    any
	}{
		{kindState, big},
		{kindState, left},
		{kindWant, wireWant{From: "b"}},
		{kindPush, wirePush{States: []wireState{big, left, state("a", 1)}}},
		{kindPush, wirePush{}},
	} {
		b, err := encode(v.kind, v.v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	meta, _ := encodeMeta("b", 3, Identity{TrunkURL: "http://b"}, metaMaxBytes)
	f.Add(meta)
	f.Add([]byte{})
	f.Add([]byte("s{\"n\":\"b\",\"v\":-1}"))
	f.Add([]byte("p{\"s\":[{\"n\":\"\",\"v\":1}]}"))
	f.Add([]byte("s{\"n\":\"b\",\"v\":1,\"c\":[{\"n\":[]}]}"))
	// Layer sizes: good, a value short, too many, too large, negative.
	for _, z := range []string{`[320,180,640,360]`, `[320,180,640]`, `[1,2,3,4,5,6]`, `[70000,1,1,1]`, `[-1,1,1,1]`} {
		f.Add([]byte(`s{"n":"b","v":1,"c":[{"n":["r"],"p":[{"i":"p","t":[{"i":"v","k":"video","l":["q","f"],"z":` + z + `}]}]}]}`))
	}
}

// FuzzDecodeGossip feeds the decoders arbitrary bytes: they must not
// panic, and what they accept must encode back to the same thing.
func FuzzDecodeGossip(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if ws, want, err := decodeMessage(b); err == nil {
			var again []byte
			if ws != nil {
				again, err = encode(kindState, ws)
			} else {
				again, err = encode(kindWant, want)
			}
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			ws2, want2, err := decodeMessage(again)
			if ws != nil && ws2 != nil { // empty lists travel as none
				ws.Confs = toWireConfs(fromWireConfs(ws.Confs))
				ws2.Confs = toWireConfs(fromWireConfs(ws2.Confs))
			}
			if err != nil || !reflect.DeepEqual(ws, ws2) || !reflect.DeepEqual(want, want2) {
				t.Fatalf("round trip: %+v %+v, then %+v %+v (%v)", ws, want, ws2, want2, err)
			}
		}
		if states, err := decodePush(b); err == nil {
			for i := range states {
				if err := states[i].validate(); err != nil {
					t.Fatalf("accepted invalid state: %v", err)
				}
			}
		}
		if m, err := decodeMeta(b); err == nil && (m.Name == "" || len(b) > metaMaxBytes) {
			t.Fatalf("accepted meta %+v from %d bytes", m, len(b))
		}
	})
}

// FuzzMergeRemoteState feeds a node arbitrary push/pull states and
// messages: it must not panic, and what it then reports must be valid.
func FuzzMergeRemoteState(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		n := newNode(Config{NodeName: "a", Log: zerolog.Nop()})
		n.memberUp("b", net.IPv4(127, 0, 0, 1), 7001, nil)
		n.memberUp("c", net.IPv4(127, 0, 0, 1), 7002, nil)
		n.mergeRemoteState(b)
		n.handleMessage(b)
		for _, info := range n.Nodes() {
			if info.Name == "" {
				t.Fatal("unnamed node")
			}
			ws := state(info.Name, 1, n.Holdings(info.Name)...)
			if err := ws.validate(); err != nil {
				t.Fatalf("holdings of %s: %v", info.Name, err)
			}
		}
		if _, err := decodePush(n.localState()); err != nil {
			t.Fatalf("own push/pull state undecodable: %v", err)
		}
		n.Close()
	})
}
