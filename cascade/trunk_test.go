package cascade

import (
	"context"
	"strings"
	"testing"
	"time"
)

// rawSend writes s on the trunk's data channel as it is.
func rawSend(t *testing.T, tk *trunk, s string) {
	t.Helper()
	tk.sendMu.Lock()
	defer tk.sendMu.Unlock()
	if err := tk.dc.SendText(s); err != nil {
		t.Fatal(err)
	}
}

// countLog counts the log lines of n that contain every one of parts.
func countLog(n *node, parts ...string) int {
	c := 0
	for _, l := range strings.Split(n.log.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			c++
		}
	}
	return c
}

// TestTrunkMalformedMessages: malformed and refused messages on a trunk
// get an error message back and a log line on both sides, and the trunk
// and its media go on.
func TestTrunkMalformedMessages(t *testing.T) {
	m := newFakeMesh()
	a := startNode(t, m, "a")
	b := startNode(t, m, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub, v := publishAndView(ctx, t, a, b)
	defer pub.Close()
	defer v.Close()
	pull := b.cascade.pullTrunk("a")
	if pull == nil {
		t.Fatal("b has no trunk to a")
	}
	var export *trunk
	for _, tk := range a.cascade.exportTrunks() {
		export = tk
	}

	sent := []struct {
		from, to *node
		tk       *trunk
		msg      string
		code     string
	}{
		{b, a, pull, `{"version":1,"type":"subscribe","conference":"whip:r"}`, codeBadMessage},
		{b, a, pull, `{"version":1,"type":"subscribe","conference":"whip:r","track":42}`, codeBadMessage},
		{b, a, pull, `not json at all`, codeBadMessage},
		{b, a, pull, `{"version":9,"type":"subscribe"}`, codeUnsupportedVersion},
		{b, a, pull, `{"version":1,"type":"teleport"}`, codeUnknownType},
		{b, a, pull, `{"version":1,"type":"offer","sdp":"v=0"}`, codeUnknownType},
		{b, a, pull, `{"version":1,"type":"subscribe","conference":"whip:nowhere","track":"TR_x"}`, codeUnknownConference},
		{b, a, pull, `{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_x"}`, codeUnknownTrack},
		{a, b, export, `{"version":1,"type":"subscribe","conference":"whip:r","track":"TR_x"}`, codeUnknownType},
		{a, b, export, `{"version":1,"type":"part","data":"bm90IGpzb24="}`, codeBadMessage},
	}
	for _, s := range sent {
		before := countLog(s.from, `"message":"the peer refused a message"`, `"code":"`+s.code+`"`)
		rawSend(t, s.tk, s.msg)
		eventually(t, 5*time.Second, "an error message for "+s.msg, func() bool {
			return countLog(s.from, `"message":"the peer refused a message"`, `"code":"`+s.code+`"`) > before
		})
	}
	if n := countLog(a, "trunk message refused") + countLog(a, "subscription refused"); n < 8 {
		t.Errorf("a logged %d refusals of the 8 messages b sent", n)
	}
	if n := countLog(b, "trunk message refused"); n < 2 {
		t.Errorf("b logged %d refusals of the 2 messages a sent", n)
	}

	// The trunk outlives its heartbeat timeout, with media.
	since, packets := time.Now(), v.Stats().Video.Packets
	for time.Since(since) < defaultTiming().dead+time.Second {
		if b.cascade.pullTrunk("a") != pull || pull.getState() != stateOpen {
			t.Fatal("the trunk closed after malformed messages")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := v.Stats().Video.Packets; got <= packets {
		t.Errorf("no video arrived while the trunk was probed (%d then %d)", packets, got)
	}
	if f := b.cascade.Stats().HeartbeatFailures + a.cascade.Stats().HeartbeatFailures; f != 0 {
		t.Errorf("%d heartbeat failures", f)
	}
}
