package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/internal/dendrite"
	"github.com/focus-sfu/focus/internal/focustest"
	"github.com/focus-sfu/focus/internal/matrixclient"
	"github.com/focus-sfu/focus/matrix"
)

// TestCascadeMatrixFociActive: federation of foci. Two foci, each its own
// process and its own appservice on one Dendrite, share a mesh. Alice
// names focus A in her call membership (m.foci.active), Bob names focus B.
// Each hears about the other through its own focus, subscribes, and gets
// the other's media over the trunk between A and B.
func TestCascadeMatrixFociActive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Two appservice registrations, one per focus, as generate-registration
	// writes them.
	type focusSetup struct {
		name, localpart, device, registration, asAddr string
	}
	setups := []*focusSetup{{name: "a", localpart: "focusa", device: "FOCUSA"}, {name: "b", localpart: "focusb", device: "FOCUSB"}}
	var regs []string
	for _, fs := range setups {
		fs.asAddr = freeLoopbackPort(t)
		m := focustest.Config().Matrix
		m.Enabled = true
		m.ServerName = dendrite.ServerName
		m.BotLocalpart = fs.localpart
		m.DeviceID = fs.device
		m.AppServiceListen = fs.asAddr
		reg, err := matrix.NewRegistration(m)
		if err != nil {
			t.Fatal(err)
		}
		fs.registration = filepath.Join(t.TempDir(), fs.name+"-registration.yaml")
		if err := matrix.WriteRegistration(fs.registration, reg, false); err != nil {
			t.Fatal(err)
		}
		regs = append(regs, fs.registration)
	}
	hs := dendrite.Start(t, dendrite.Options{AppServiceRegistration: regs})

	var nodes []*cascadeNode
	var bots []matrixclient.Focus
	for _, fs := range setups {
		extra := fmt.Sprintf(`matrix:
  enabled: true
  homeserver_url: %q
  server_name: %q
  registration: %q
  bot_localpart: %q
  device_id: %q
  appservice_listen: %q
  data_dir: %q
`, hs.URL, dendrite.ServerName, fs.registration, fs.localpart, fs.device, fs.asAddr, t.TempDir())
		var seeds []int
		if len(nodes) > 0 {
			seeds = append(seeds, nodes[0].gossip)
		}
		nodes = append(nodes, startCascadeNodeWith(t, fs.name, nodeConfig{Top: extra}, seeds...))
		bots = append(bots, matrixclient.Focus{UserID: id.NewUserID(fs.localpart, dendrite.ServerName), DeviceID: id.DeviceID(fs.device)})
	}
	waitMesh(ctx, t, nodes, "a", "b")

	alice, bob := hs.CreateUser(t, "alice"), hs.CreateUser(t, "bob")
	room := hs.CreateRoom(t, alice, bob.ID, bots[0].UserID, bots[1].UserID)
	bob.Join(t, room)
	err := poll(ctx, func() bool {
		resp, err := alice.Client.JoinedMembers(ctx, room)
		if err != nil {
			return false
		}
		_, joinedA := resp.Joined[bots[0].UserID]
		_, joinedB := resp.Joined[bots[1].UserID]
		return joinedA && joinedB
	})
	if err != nil {
		t.Fatalf("the foci did not both join %s: %v", room, err)
	}

	const conf = "conf-cascade"
	clients := map[string]*matrixclient.Client{}
	for i, u := range []*dendrite.User{alice, bob} {
		c, err := matrixclient.New(ctx, hs.URL, matrixclient.User{UserID: u.ID, AccessToken: u.AccessToken, DeviceID: u.DeviceID}, matrixclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(c.Transcript())
			}
			_ = c.Close()
		})
		joinCallVia(ctx, t, c, room, conf, bots[i])
		clients[string(u.ID)] = c
	}
	a, b := clients[string(alice.ID)], clients[string(bob.ID)]
	t.Log("alice is in the call through focus a, bob through focus b")

	bobRefs := waitPublished(ctx, t, a, matrixclient.PurposeUserMedia, 2, b)
	aliceRefs := waitPublished(ctx, t, b, matrixclient.PurposeUserMedia, 2, a)
	if err := a.Subscribe(ctx, bobRefs...); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, aliceRefs...); err != nil {
		t.Fatal(err)
	}
	checkReceived(ctx, t, a, bobRefs, 100)
	checkReceived(ctx, t, b, aliceRefs, 100)
	checkNoProblems(t, a, b)
	for _, n := range nodes {
		other := "b"
		if n.Name == "b" {
			other = "a"
		}
		if got := trunkSubscriptions(ctx, t, n, other); got != 2 {
			t.Errorf("%s pulls %d tracks from %s, want 2", n.Name, got, other)
		}
	}
	t.Log("alice and bob get each other's audio and video through the trunk between a and b")
	leaveAll(ctx, t, a, b)
}
