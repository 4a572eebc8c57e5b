package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/dendrite"
	"github.com/focus-sfu/focus/internal/focustest"
	"github.com/focus-sfu/focus/internal/matrixclient"
)

// TestMatrixRestart: the focus stops gracefully mid-call and starts again
// with the same data directory and registration while Dendrite keeps
// running. Both callers are hung up with focus_shutdown. Alice's
// re-invite, sent while the focus is down, waits in Dendrite's to-device
// inbox; the new focus resumes /sync from its saved token and answers it
// exactly once. Bob re-invites after the restart, and both receive each
// other again. A transaction ID processed before the restart and replayed
// after it is answered 200 and not processed again.
//
// Dendrite keeps a to-device message until a /sync with a later since
// token acknowledges it, so here the invite would arrive even if the
// focus lost its token; the test checks that the token is saved, and that
// what arrives is handled once.
func TestMatrixRestart(t *testing.T) {
	deliveryLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := startMatrix(t)
	const conf = "conf-restart"
	call := env.callOfTwo(ctx, t, conf, matrixclient.Options{}, matrixclient.Options{})
	users, room, alice, bob := call.users, call.room, call.alice, call.bob
	receiveEachOther(ctx, t, alice, bob)

	// A transaction the first focus processes; it is replayed below.
	const txnID, replayType = "restart-replay-1", "org.focus-sfu.test.replay"
	if code := env.putTransaction(ctx, t, txnID, replayType, users[0]); code != http.StatusOK {
		t.Fatalf("transaction %s: status %d, want 200", txnID, code)
	}
	if n := logCount(env.focus, "ignoring to-device message", map[string]string{"type": replayType}); n != 1 {
		t.Fatalf("the first focus handled the to-device message of transaction %s %d times, want 1", txnID, n)
	}

	// The focus stops gracefully: both calls are hung up, with the reason.
	first := map[*matrixclient.Client]string{alice: alice.CallID(), bob: bob.CallID()}
	stopAt := time.Now()
	env.focus.Stop()
	t.Logf("the focus stopped in %v", time.Since(stopAt).Round(time.Millisecond))
	for _, c := range []*matrixclient.Client{alice, bob} {
		reason, err := c.WaitHangup(ctx)
		if err != nil {
			t.Fatalf("%s: %v", c.UserID(), err)
		}
		if reason != "focus_shutdown" {
			t.Errorf("%s was hung up with %q, want focus_shutdown", c.UserID(), reason)
		}
	}
	if n := logCount(env.focus, "call ended", map[string]string{"reason": "focus_shutdown"}); n != 2 {
		t.Errorf("the focus ended %d calls for focus_shutdown, want 2", n)
	}
	if n := logCount(env.focus, "send hangup", nil); n != 0 {
		t.Errorf("the focus failed to send %d hangups at shutdown", n)
	}
	// The data directory holds the /sync position the new focus resumes
	// from (docs/matrix.md, What the data directory holds).
	var saved struct {
		NextBatch string `json:"next_batch"`
	}
	if b, err := os.ReadFile(filepath.Join(env.cfg.DataDir, "sync.json")); err != nil || json.Unmarshal(b, &saved) != nil || saved.NextBatch == "" {
		t.Errorf("no /sync position saved in the data directory: %v, %q", err, b)
	}
	oldFocus := env.focus

	// While the focus is down, Alice calls it again. Invite waits for the
	// answer; the invite and her candidates wait in Dendrite.
	var inviteErr error
	invited := make(chan struct{})
	go func() {
		defer close(invited)
		inviteErr = alice.Invite(ctx, room, conf, env.bot)
	}()
	t.Cleanup(func() { cancel(); <-invited }) // before the clients close
	var second string
	err := poll(ctx, func() bool {
		second = alice.CallID()
		return second != first[alice] && sentEndOfCandidates(alice, second)
	})
	if err != nil {
		t.Fatalf("alice did not send her invite and candidates while the focus was down: %v", err)
	}
	if n := len(callMessages(alice, matrixclient.TypeInvite.Type, second, true)); n != 1 {
		t.Fatalf("alice sent %d invites for call %s, want 1", n, second)
	}

	// The same configuration again; Dendrite kept running.
	restartAt := time.Now()
	env.restartFocus(t)
	select {
	case <-invited:
		err = inviteErr
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		t.Fatalf("alice's invite sent while the focus was down: %v", err)
	}
	t.Logf("alice answered %v after the restart began, %v after the stop",
		time.Since(restartAt).Round(time.Millisecond), time.Since(stopAt).Round(time.Millisecond))
	if err := bob.Invite(ctx, room, conf, env.bot); err != nil {
		t.Fatalf("bob invites after the restart: %v", err)
	}
	if bob.CallID() == first[bob] {
		t.Fatal("bob's new invite reused the call ID")
	}
	receiveEachOther(ctx, t, alice, bob)

	// The replayed transaction is acknowledged and not processed.
	if code := env.putTransaction(ctx, t, txnID, replayType, users[0]); code != http.StatusOK {
		t.Errorf("replayed transaction %s: status %d, want 200", txnID, code)
	}
	if n := logCount(env.focus, "ignoring to-device message", map[string]string{"type": replayType}); n != 0 {
		t.Errorf("the new focus processed replayed transaction %s (%d deliveries)", txnID, n)
	}
	if n := logCount(env.focus, "matrix: transaction already processed", map[string]string{"txn": txnID}); n != 1 {
		t.Errorf("the new focus logged %d times that transaction %s was processed already, want 1", n, txnID)
	}

	// Alice's invite was handled once: one answer on the wire, one in
	// the log, and two participants in the new focus's conference.
	if n := len(callMessages(alice, matrixclient.TypeAnswer.Type, second, false)); n != 1 {
		t.Errorf("alice got %d answers to call %s, want 1", n, second)
	}
	if n := len(callMessages(alice, matrixclient.TypeHangup.Type, second, false)); n != 0 {
		t.Errorf("alice got %d hangups of call %s", n, second)
	}
	if n := logCount(env.focus, "call answered", map[string]string{"call": second}); n != 1 {
		t.Errorf("the new focus answered alice's call %s %d times, want 1", second, n)
	}
	if n := logCount(oldFocus, "call answered", map[string]string{"call": second}); n != 0 {
		t.Errorf("the stopped focus answered alice's call %s", second)
	}
	key := conferenceKey(room, conf)
	if joined, left := participantsLeft(env.focus, key); joined != 2 || left != 0 {
		t.Errorf("conference %s after the restart: %d joined, %d left; want 2 and 0", key, joined, left)
	}
	checkNoProblems(t, alice, bob)
	leaveAll(ctx, t, alice, bob)
}

// receiveEachOther waits until a and b are told of each other's user
// media, subscribes each to the other's, and checks what arrives.
func receiveEachOther(ctx context.Context, t *testing.T, a, b *matrixclient.Client) {
	t.Helper()
	aRefs := waitPublished(ctx, t, b, matrixclient.PurposeUserMedia, 2, a)
	bRefs := waitPublished(ctx, t, a, matrixclient.PurposeUserMedia, 2, b)
	if err := a.Subscribe(ctx, bRefs...); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, aRefs...); err != nil {
		t.Fatal(err)
	}
	checkReceived(ctx, t, a, bRefs, 100)
	checkReceived(ctx, t, b, aRefs, 100)
}

// callMessages returns c's to-device messages of one type in one call,
// sent or received.
func callMessages(c *matrixclient.Client, typ, callID string, sent bool) []matrixclient.Message {
	var out []matrixclient.Message
	for _, m := range c.MessagesOfType(typ) {
		var b struct {
			CallID string `json:"call_id"`
		}
		if m.Via == matrixclient.ViaToDevice && m.Sent == sent && json.Unmarshal(m.Content, &b) == nil && b.CallID == callID {
			out = append(out, m)
		}
	}
	return out
}

// sentEndOfCandidates reports whether c has sent the empty candidate that
// ends its candidates in call callID.
func sentEndOfCandidates(c *matrixclient.Client, callID string) bool {
	for _, m := range callMessages(c, matrixclient.TypeCandidates.Type, callID, true) {
		var b struct {
			Candidates []struct {
				Candidate string `json:"candidate"`
			} `json:"candidates"`
		}
		if json.Unmarshal(m.Content, &b) != nil {
			continue
		}
		for _, cand := range b.Candidates {
			if cand.Candidate == "" {
				return true
			}
		}
	}
	return false
}

// putTransaction pushes a transaction to the focus's appservice listener
// as the homeserver would, with the right hs_token: one to-device message
// of type typ from u to the focus's device. It returns the status.
func (e *matrixEnv) putTransaction(ctx context.Context, t *testing.T, txnID, typ string, u *dendrite.User) int {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"events": []any{},
		"de.sorunome.msc2409.to_device": []any{map[string]any{
			"type": typ, "sender": u.ID, "to_user_id": e.bot.UserID, "to_device_id": e.bot.DeviceID,
			"content": map[string]any{"txn": txnID},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s/_matrix/app/v1/transactions/%s", e.asAddr, txnID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.hsToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.hs.HTTP.Do(req)
	if err != nil {
		t.Fatalf("transaction %s: %v", txnID, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// logCount counts the lines of f's log with message msg whose string
// fields have the values in fields.
func logCount(f *focustest.Focus, msg string, fields map[string]string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(f.Log()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil || l["message"] != msg {
			continue
		}
		match := true
		for k, v := range fields {
			if l[k] != v {
				match = false
			}
		}
		if match {
			n++
		}
	}
	return n
}
