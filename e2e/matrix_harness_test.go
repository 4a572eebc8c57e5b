package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/dendrite"
	"github.com/focus-sfu/focus/internal/focustest"
	"github.com/focus-sfu/focus/internal/freeport"
	"github.com/focus-sfu/focus/internal/matrixclient"
	"github.com/focus-sfu/focus/matrix"
)

// matrixEnv is a real Dendrite with the focus registered as an
// appservice, and the focus running in-process with Matrix enabled.
type matrixEnv struct {
	hs    *dendrite.Server
	focus *focustest.Focus
	bot   matrixclient.Focus
	// reg is the registration Dendrite read (for its tokens and URL).
	reg     string
	hsToken string
	asAddr  string
	// cfg is the focus's matrix section, for restartFocus.
	cfg config.Matrix
}

// startMatrix writes a registration the way `focus generate-registration`
// does, starts Dendrite with it, then starts the focus with the same
// registration on the appservice port it names.
func startMatrix(t *testing.T) *matrixEnv {
	t.Helper()
	asAddr := freeLoopbackPort(t)
	m := focustest.Config().Matrix
	m.Enabled = true
	m.ServerName = dendrite.ServerName
	m.AppServiceListen = asAddr
	reg, err := matrix.NewRegistration(m)
	if err != nil {
		t.Fatalf("registration: %v", err)
	}
	path := filepath.Join(t.TempDir(), "registration.yaml")
	if err := matrix.WriteRegistration(path, reg, false); err != nil {
		t.Fatalf("registration: %v", err)
	}
	hs := dendrite.Start(t, dendrite.Options{AppServiceRegistration: []string{path}})
	m.HomeserverURL = hs.URL
	m.Registration = path
	m.DataDir = t.TempDir()
	f := focustest.Start(t, func(c *config.Config) { c.Matrix = m })
	return &matrixEnv{
		hs: hs, focus: f, reg: path, hsToken: reg.ServerToken, asAddr: asAddr, cfg: m,
		bot: matrixclient.Focus{UserID: id.NewUserID(m.BotLocalpart, m.ServerName), DeviceID: id.DeviceID(m.DeviceID)},
	}
}

// freeLoopbackPort returns a loopback address whose port was free a
// moment ago: Dendrite must read the appservice URL before the focus
// listens on it.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// room creates a room as the first user, with the others and the focus
// invited; the others join, and it waits until the focus has joined too.
func (e *matrixEnv) room(ctx context.Context, t *testing.T, users ...*dendrite.User) id.RoomID {
	t.Helper()
	invitees := []id.UserID{e.bot.UserID}
	for _, u := range users[1:] {
		invitees = append(invitees, u.ID)
	}
	room := e.hs.CreateRoom(t, users[0], invitees...)
	for _, u := range users[1:] {
		u.Join(t, room)
	}
	var members []id.UserID
	err := poll(ctx, func() bool {
		resp, err := users[0].Client.JoinedMembers(ctx, room)
		if err != nil {
			return false
		}
		members = members[:0]
		for u := range resp.Joined {
			members = append(members, u)
		}
		return slices.Contains(members, e.bot.UserID)
	})
	if err != nil {
		t.Fatalf("the focus %s did not join %s (members %v): %v", e.bot.UserID, room, members, err)
	}
	return room
}

// client makes a matrixclient for a Dendrite user; it is closed at the
// end of the test, and its transcript is logged if the test failed.
func (e *matrixEnv) client(ctx context.Context, t *testing.T, u *dendrite.User, opts matrixclient.Options) *matrixclient.Client {
	t.Helper()
	c, err := matrixclient.New(ctx, e.hs.URL, matrixclient.User{UserID: u.ID, AccessToken: u.AccessToken, DeviceID: u.DeviceID}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Transcript())
		}
		if err := c.Close(); err != nil {
			t.Errorf("%s: close: %v", u.ID, err)
		}
	})
	return c
}

// callOfTwo is alice and bob, members of a new room, in call conf of it.
type callOfTwo struct {
	users      []*dendrite.User // alice, bob
	room       id.RoomID
	alice, bob *matrixclient.Client
}

// callOfTwo creates alice and bob, a room of theirs, and their clients
// (with the given options), and has both join call conf.
func (e *matrixEnv) callOfTwo(ctx context.Context, t *testing.T, conf string, aliceOpts, bobOpts matrixclient.Options) callOfTwo {
	t.Helper()
	c := callOfTwo{users: []*dendrite.User{e.hs.CreateUser(t, "alice"), e.hs.CreateUser(t, "bob")}}
	c.room = e.room(ctx, t, c.users...)
	c.alice = e.client(ctx, t, c.users[0], aliceOpts)
	c.bob = e.client(ctx, t, c.users[1], bobOpts)
	e.joinCall(ctx, t, c.alice, c.room, conf)
	e.joinCall(ctx, t, c.bob, c.room, conf)
	return c
}

// joinCall has c join call conf of room through the env's focus (see
// joinCallVia).
func (e *matrixEnv) joinCall(ctx context.Context, t *testing.T, c *matrixclient.Client, room id.RoomID, conf string) int {
	t.Helper()
	return joinCallVia(ctx, t, c, room, conf, e.bot)
}

// joinCallVia publishes c's membership naming focus and invites it. The
// focus learns of the membership from an appservice transaction and of
// the invite from its /sync; they can arrive in either order, so a
// not_a_member hangup is retried a few times and the retries returned.
func joinCallVia(ctx context.Context, t *testing.T, c *matrixclient.Client, room id.RoomID, conf string, focus matrixclient.Focus) int {
	t.Helper()
	if err := c.PublishMembership(ctx, room, conf, focus); err != nil {
		t.Fatal(err)
	}
	for try := 0; ; try++ {
		err := c.Invite(ctx, room, conf, focus)
		var he *matrixclient.HangupError
		if err == nil {
			return try
		}
		if !errors.As(err, &he) || he.Reason != "not_a_member" || try == 10 {
			t.Fatalf("%s invites %s: %v", c.UserID(), focus.UserID, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// streamsOf returns the announced streams of one device and purpose.
func streamsOf(ss []matrixclient.Stream, u id.UserID, d id.DeviceID, p matrixclient.Purpose) []matrixclient.Stream {
	var out []matrixclient.Stream
	for _, s := range ss {
		if s.UserID == u && s.DeviceID == d && s.Purpose == p {
			out = append(out, s)
		}
	}
	return out
}

// waitPublished waits until c has been told of a stream of purpose p from
// each of the others, with want tracks, and returns their tracks.
func waitPublished(ctx context.Context, t *testing.T, c *matrixclient.Client, p matrixclient.Purpose, want int, others ...*matrixclient.Client) []matrixclient.TrackRef {
	t.Helper()
	var refs []matrixclient.TrackRef
	_, err := c.WaitStreams(ctx, func(ss []matrixclient.Stream) bool {
		refs = refs[:0]
		for _, o := range others {
			got := streamsOf(ss, o.UserID(), o.DeviceID(), p)
			if len(got) != 1 || len(got[0].Tracks) != want {
				return false
			}
			refs = append(refs, got[0].Refs()...)
		}
		return true
	})
	if err != nil {
		t.Fatalf("%s: %s streams of %d others: %v", c.UserID(), p, len(others), err)
	}
	return refs
}

// checkReceived waits for n packets on each track and checks them as the
// WHIP delivery tests do: continuous, intact, VP8 starting at a keyframe.
func checkReceived(ctx context.Context, t *testing.T, c *matrixclient.Client, refs []matrixclient.TrackRef, n int) {
	t.Helper()
	for _, r := range refs {
		if err := c.WaitPackets(ctx, r, n); err != nil {
			t.Fatalf("%s: %v", c.UserID(), err)
		}
	}
	for _, r := range refs {
		rt, _ := c.ReceivedTrack(r)
		name := fmt.Sprintf("%s receives %s (%s)", c.UserID(), r, rt.Kind)
		checkDeliveryStream(t, name, rt.Stats, 1)
		if rt.Kind == webrtc.RTPCodecTypeVideo && !rt.Stats.FirstKeyframe {
			t.Errorf("%s: first packet is not a keyframe start: %+v", name, rt.Stats.First)
		}
		if rt.Starts != 1 {
			t.Errorf("%s: track began %d times", name, rt.Starts)
		}
	}
}

// checkNoProblems fails the test for anything a client found wrong in the
// focus's messages.
func checkNoProblems(t *testing.T, cs ...*matrixclient.Client) {
	t.Helper()
	for _, c := range cs {
		if p := c.Problems(); len(p) > 0 {
			t.Errorf("%s saw protocol problems:\n  %s", c.UserID(), strings.Join(p, "\n  "))
		}
	}
}

// participantsLeft reads the focus's log and returns, for conference
// conf, how many participants joined and how many of them left.
func participantsLeft(f *focustest.Focus, conf string) (joined, left int) {
	in := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(f.Log()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct {
			Msg         string `json:"message"`
			Conf        string `json:"conf"`
			Participant string `json:"participant"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Conf != conf {
			continue
		}
		switch l.Msg {
		case "participant joined":
			in[l.Participant] = true
			joined++
		case "participant left":
			if in[l.Participant] {
				left++
			}
		}
	}
	return joined, left
}

// conferenceKey is the core's key for a Matrix conference
// (docs/matrix.md ("Wire protocol")).
func conferenceKey(room id.RoomID, conf string) string {
	return "m:" + string(room) + "/" + conf
}

// packetsStopped reports whether no packet of ref arrived over settle
// then window: a track whose subscription ended.
func packetsStopped(c *matrixclient.Client, ref matrixclient.TrackRef, settle, window time.Duration) (bool, int, int) {
	time.Sleep(settle)
	before, _ := c.ReceivedTrack(ref)
	time.Sleep(window)
	after, _ := c.ReceivedTrack(ref)
	return after.Stats.Packets == before.Stats.Packets, before.Stats.Packets, after.Stats.Packets
}

func poll(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// restartFocus starts a new focus with the configuration of the first:
// the same data directory, registration and appservice address, so that
// Dendrite, which keeps running, reaches it where it reached the old one.
// The old focus must have been stopped (e.focus.Stop). e.focus becomes
// the new one.
func (e *matrixEnv) restartFocus(t *testing.T) {
	t.Helper()
	m := e.cfg
	e.focus = focustest.Start(t, func(c *config.Config) { c.Matrix = m })
}
