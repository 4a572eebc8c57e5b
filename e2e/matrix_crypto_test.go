//go:build goolm

package e2e

// The clients here encrypt with mautrix's OlmMachine, which links an Olm
// only with the goolm build tag:
//
//	go test -race -tags goolm -run '^TestMatrixEncrypted' ./e2e/
//
// test.sh runs it so. The focus's own Olm needs no tag.

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/internal/dendrite"
	"github.com/focus-sfu/focus/internal/matrixclient"
)

// TestMatrixEncryptedCall: Alice and Bob send every to-device message to
// the focus Olm-encrypted, Carol in plaintext, all in one call. The focus
// answers Alice and Bob encrypted (answer, candidates, hangup) and Carol
// in plaintext; everyone receives the others' audio and video. Alice's
// encrypted hangup takes her out of the call; Bob, whose membership goes,
// is hung up encrypted.
func TestMatrixEncryptedCall(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := startMatrix(t)
	us := []*dendrite.User{env.hs.CreateUser(t, "alice"), env.hs.CreateUser(t, "bob"), env.hs.CreateUser(t, "carol")}
	room := env.room(ctx, t, us...)
	const conf = "conf-olm"

	// The clients encrypt for the keys the focus publishes once its
	// device is logged in.
	if err := poll(ctx, func() bool {
		return strings.Contains(env.focus.Log(), "published the bot device's encryption keys")
	}); err != nil {
		t.Fatalf("the focus did not publish its device's keys: %v", err)
	}
	alice := env.client(ctx, t, us[0], matrixclient.Options{Encryptor: clientOlm(ctx, t, env, us[0])})
	bob := env.client(ctx, t, us[1], matrixclient.Options{Encryptor: clientOlm(ctx, t, env, us[1])})
	carol := env.client(ctx, t, us[2], matrixclient.Options{})
	cs := []*matrixclient.Client{alice, bob, carol}
	for _, c := range cs {
		if n := env.joinCall(ctx, t, c, room, conf); n > 0 {
			t.Logf("%s: the focus said not_a_member %d times before it had seen the membership", c.UserID(), n)
		}
	}

	// Everyone subscribes to the others' user media and receives it.
	for i, c := range cs {
		var refs []matrixclient.TrackRef
		for j, o := range cs {
			if j != i {
				refs = append(refs, waitPublished(ctx, t, c, matrixclient.PurposeUserMedia, 2, o)...)
			}
		}
		if err := c.Subscribe(ctx, refs...); err != nil {
			t.Fatal(err)
		}
		checkReceived(ctx, t, c, refs, 150)
	}

	// The signalling went as each client wrote: Alice's and Bob's
	// encrypted both ways, Carol's in plaintext both ways.
	for _, c := range []*matrixclient.Client{alice, bob} {
		checkToDevice(t, c, true, "m.call.invite", "m.call.candidates", "m.call.select_answer")
		checkFromFocus(t, c, env.bot.UserID, true, "m.call.answer", "m.call.candidates")
	}
	checkToDevice(t, carol, false, "m.call.invite", "m.call.candidates", "m.call.select_answer")
	checkFromFocus(t, carol, env.bot.UserID, false, "m.call.answer", "m.call.candidates")

	// Alice hangs up, encrypted, her membership left as it is: the focus
	// ends her call for that reason, and Carol is told her streams are
	// gone.
	if err := alice.Hangup(ctx, "user_hangup"); err != nil {
		t.Errorf("alice hangs up: %v", err)
	}
	checkToDevice(t, alice, true, "m.call.hangup")
	if err := poll(ctx, func() bool { return focusSawHangup(env, alice, "user_hangup") }); err != nil {
		t.Errorf("the focus did not log alice's hangup: %v", err)
	}
	if _, err := carol.WaitStreams(ctx, func(ss []matrixclient.Stream) bool {
		return len(streamsOf(ss, alice.UserID(), alice.DeviceID(), matrixclient.PurposeUserMedia)) == 0
	}); err != nil {
		t.Errorf("carol still sees alice's streams after her encrypted hangup: %v", err)
	}
	if err := alice.RemoveMembership(ctx); err != nil {
		t.Error(err)
	}

	// Bob's membership goes: the focus hangs him up, encrypted.
	if err := bob.RemoveMembership(ctx); err != nil {
		t.Fatal(err)
	}
	if reason, err := bob.WaitHangup(ctx); err != nil {
		t.Errorf("bob, whose membership was removed: %v", err)
	} else {
		t.Logf("bob hung up: %q", reason)
	}
	checkFromFocus(t, bob, env.bot.UserID, true, "m.call.hangup")

	if err := carol.Leave(ctx); err != nil {
		t.Errorf("carol leaves: %v", err)
	}
	key := conferenceKey(room, conf)
	var joined, left int
	if err := poll(ctx, func() bool {
		joined, left = participantsLeft(env.focus, key)
		return joined >= 3 && left == joined
	}); err != nil {
		t.Errorf("conference %s: %d participants joined, %d left", key, joined, left)
	}
	checkNoProblems(t, cs...)
	if strings.Contains(env.focus.Log(), "cannot decrypt") {
		t.Error("the focus could not decrypt a message (its log says which)")
	}
}

// focusSawHangup reports whether the focus logged a hangup from c's
// device with reason.
func focusSawHangup(env *matrixEnv, c *matrixclient.Client, reason string) bool {
	for _, line := range strings.Split(env.focus.Log(), "\n") {
		var l struct {
			Msg    string `json:"message"`
			User   string `json:"user"`
			Device string `json:"device"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "client hung up" &&
			l.User == string(c.UserID()) && l.Device == string(c.DeviceID()) && l.Reason == reason {
			return true
		}
	}
	return false
}

// clientOlm is a user's device's mautrix OlmMachine, its state in a
// temporary directory, its keys uploaded. It is closed after the client.
func clientOlm(ctx context.Context, t *testing.T, env *matrixEnv, u *dendrite.User) *matrixclient.Olm {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	o, err := matrixclient.NewOlm(ctx, env.hs.URL, matrixclient.User{UserID: u.ID, AccessToken: u.AccessToken, DeviceID: u.DeviceID}, t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

// checkToDevice checks that c sent each of types at least once, and every
// to-device message encrypted, or every one in plaintext.
func checkToDevice(t *testing.T, c *matrixclient.Client, encrypted bool, types ...string) {
	t.Helper()
	sent := map[string]int{}
	for _, m := range c.Messages() {
		if !m.Sent || m.Via != matrixclient.ViaToDevice {
			continue
		}
		sent[m.Type]++
		if m.Encrypted != encrypted {
			t.Errorf("%s sent %s with encrypted=%v, want %v", c.UserID(), m.Type, m.Encrypted, encrypted)
		}
	}
	for _, typ := range types {
		if sent[typ] == 0 {
			t.Errorf("%s sent no %s (sent %v)", c.UserID(), typ, sent)
		}
	}
}

// checkFromFocus checks that c received each of types from the focus at
// least once, and every to-device message from it encrypted (as
// m.room.encrypted on the wire, decrypting to its type), or every one in
// plaintext.
func checkFromFocus(t *testing.T, c *matrixclient.Client, focus id.UserID, encrypted bool, types ...string) {
	t.Helper()
	got := map[string]int{}
	for _, m := range c.Messages() {
		if m.Sent || m.Via != matrixclient.ViaToDevice || m.Sender != focus {
			continue
		}
		got[m.Type]++
		if m.Encrypted != encrypted {
			t.Errorf("%s received %s with encrypted=%v, want %v", c.UserID(), m.Type, m.Encrypted, encrypted)
		}
	}
	for _, typ := range types {
		if got[typ] == 0 {
			t.Errorf("%s received no %s from the focus (received %v)", c.UserID(), typ, got)
		}
	}
}
