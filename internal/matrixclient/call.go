package matrixclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/internal/testclient"
)

// HangupError is what Invite returns when the focus hangs up instead of
// answering, and what Ended reports after any hangup from the focus.
type HangupError struct {
	Reason string
}

func (e *HangupError) Error() string {
	return fmt.Sprintf("matrixclient: focus hung up: %q", e.Reason)
}

// ErrNoCall is returned by call operations when the client is in none.
var ErrNoCall = errors.New("matrixclient: not in a call")

// inviteLifetime is the invite's lifetime in ms, as matrix-js-sdk sets it.
const inviteLifetime = 60000

// call is one call to the focus: one PeerConnection, one data channel.
type call struct {
	c         *Client
	room      id.RoomID
	confID    string
	callID    string
	sessionID string
	focus     Focus
	pc        *webrtc.PeerConnection
	dc        *webrtc.DataChannel

	answered, connected, dcOpen, ended chan struct{}
	connectedOnce, dcOpenOnce          sync.Once
	endOnce                            sync.Once
	endErr                             error

	neg negotiator

	// seq is the next outgoing seq; guarded by Client.sendMu.
	seq int

	// Guarded by Client.mu.
	endReason    string
	endedByFocus bool
	focusSession string
	focusPartyID string
	recvSeq      int
	remoteSet    bool
	remoteCands  []webrtc.ICECandidateInit
	remoteEOC    bool
	local        []*localTrack
	remote       map[TrackRef]*remoteTrack
	available    Metadata
	pings        int
	nextLocalMid int

	// Local candidates waiting to be trickled.
	candMu   sync.Mutex
	cands    []wireCandidate
	candKick chan struct{}

	wg sync.WaitGroup
}

// PublishMembership writes the client's call membership for conference
// confID in room, naming focus as active and preferred.
func (c *Client) PublishMembership(ctx context.Context, room id.RoomID, confID string, focus Focus) error {
	now := time.Now()
	var err error
	if c.opts.LegacyMembership {
		content := newLegacyMemberContent(confID, c.user.DeviceID, c.sessionID(), focus, c.opts.MembershipExpiry, now)
		err = c.sendState(ctx, room, TypeLegacyCallMember, string(c.user.UserID), content)
	} else {
		content := newMemberContent(confID, c.user.DeviceID, focus, c.opts.MembershipExpiry, now)
		err = c.sendState(ctx, room, TypeCallMember, memberStateKey(c.user.UserID, c.user.DeviceID), content)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.membership = &membershipRef{room: room, confID: confID}
	c.mu.Unlock()
	return nil
}

// RemoveMembership takes the membership back: empty content in the
// per-device format, no calls in the legacy one. It does not hang up.
func (c *Client) RemoveMembership(ctx context.Context) error {
	c.mu.Lock()
	m := c.membership
	c.mu.Unlock()
	if m == nil {
		return errors.New("matrixclient: no membership published")
	}
	var err error
	if c.opts.LegacyMembership {
		err = c.sendState(ctx, m.room, TypeLegacyCallMember, string(c.user.UserID), legacyMemberContent{Calls: []legacyCall{}})
	} else {
		err = c.sendState(ctx, m.room, TypeCallMember, memberStateKey(c.user.UserID, c.user.DeviceID), struct{}{})
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.membership = nil
	c.mu.Unlock()
	return nil
}

func (c *Client) sendState(ctx context.Context, room id.RoomID, typ event.Type, key string, content any) error {
	raw, err := json.Marshal(content)
	if err != nil {
		return fmt.Errorf("matrixclient: encode %s: %w", typ.Type, err)
	}
	if _, err := c.mx.SendStateEvent(ctx, room, typ, key, json.RawMessage(raw)); err != nil {
		return fmt.Errorf("matrixclient: %s in %s: send %s %q: %w", c.user.UserID, room, typ.Type, key, err)
	}
	c.record(Message{Sent: true, Via: "state", Type: typ.Type, Content: raw})
	return nil
}

// JoinCall publishes the membership and calls the focus: PublishMembership
// then Invite.
func (c *Client) JoinCall(ctx context.Context, room id.RoomID, confID string, focus Focus) error {
	if err := c.PublishMembership(ctx, room, confID, focus); err != nil {
		return err
	}
	return c.Invite(ctx, room, confID, focus)
}

// Invite calls the focus: it offers the user-media tracks and the data
// channel in an m.call.invite, trickles candidates, and returns once the
// focus answered, the PeerConnection is connected and the data channel is
// open. If the focus hangs up first, the error is a *HangupError.
func (c *Client) Invite(ctx context.Context, room id.RoomID, confID string, focus Focus) (err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("matrixclient: client closed")
	}
	if c.cur != nil && !c.cur.isEnded() {
		c.mu.Unlock()
		return errors.New("matrixclient: already in a call")
	}
	c.mu.Unlock()

	cl, err := c.newCall(room, confID, focus)
	if err != nil {
		return err
	}
	invited := false
	defer func() {
		if err == nil {
			return
		}
		// A call the focus may still hold is hung up, as matrix-js-sdk
		// does when its invite times out.
		var he *HangupError
		if invited && !errors.As(err, &he) {
			hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = cl.sendSeq(hctx, TypeHangup, func(b callBase) any {
				return hangupContent{callBase: b, Reason: "invite_timeout"}
			})
			cancel()
		}
		_ = cl.end(fmt.Sprintf("invite failed: %v", err), false)
	}()
	offer, err := cl.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("matrixclient: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(cl.pc)
	if err := cl.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("matrixclient: set local offer: %w", err)
	}
	if c.opts.CandidatesInOffer {
		select {
		case <-gathered:
		case <-ctx.Done():
			return fmt.Errorf("matrixclient: gather candidates: %w", ctx.Err())
		}
		offer = *cl.pc.LocalDescription()
	}

	c.mu.Lock()
	c.cur = cl
	c.mu.Unlock()

	err = cl.sendSeq(ctx, TypeInvite, func(b callBase) any {
		return inviteContent{
			callBase: b,
			Lifetime: inviteLifetime,
			Offer:    sessionDescription{Type: offer.Type.String(), SDP: offer.SDP},
			Metadata: cl.localMetadata(),
		}
	})
	if err != nil {
		return err
	}
	invited = true
	if !c.opts.CandidatesInOffer {
		cl.spawn(cl.trickle)
	}

	select {
	case <-cl.answered:
	case <-cl.ended:
		return cl.endError()
	case <-ctx.Done():
		return fmt.Errorf("matrixclient: wait for answer to call %s: %w", cl.callID, ctx.Err())
	}
	if !c.opts.NoSelectAnswer {
		c.mu.Lock()
		party := cl.focusPartyID
		c.mu.Unlock()
		err := cl.sendSeq(ctx, TypeSelectAnswer, func(b callBase) any {
			return selectAnswerContent{callBase: b, SelectedPartyID: party}
		})
		if err != nil {
			return err
		}
	}
	for _, w := range []struct {
		what string
		ch   chan struct{}
	}{{"connection", cl.connected}, {"data channel", cl.dcOpen}} {
		select {
		case <-w.ch:
		case <-cl.ended:
			return cl.endError()
		case <-ctx.Done():
			return fmt.Errorf("matrixclient: call %s: wait for %s (peer connection %s): %w",
				cl.callID, w.what, cl.pc.ConnectionState(), ctx.Err())
		}
	}
	c.mu.Lock()
	local := append([]*localTrack(nil), cl.local...)
	c.mu.Unlock()
	for _, t := range local {
		cl.startSending(t)
	}
	return nil
}

// sessionID is the client's session, the same for every call, as
// matrix-js-sdk has one per client.
func (c *Client) sessionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == "" {
		c.session = randomID(8)
	}
	return c.session
}

func (c *Client) newCall(room id.RoomID, confID string, focus Focus) (*call, error) {
	api, err := testclient.NewAPI()
	if err != nil {
		return nil, fmt.Errorf("matrixclient: %w", err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("matrixclient: new peer connection: %w", err)
	}
	cl := &call{
		c: c, room: room, confID: confID, callID: randomID(8), sessionID: c.sessionID(), focus: focus, pc: pc,
		answered: make(chan struct{}), connected: make(chan struct{}), dcOpen: make(chan struct{}),
		ended: make(chan struct{}), candKick: make(chan struct{}, 1),
		remote: make(map[TrackRef]*remoteTrack),
	}
	fail := func(err error) (*call, error) {
		_ = pc.Close()
		return nil, err
	}
	dir := webrtc.RTPTransceiverDirectionSendonly
	if c.opts.SendRecv {
		dir = webrtc.RTPTransceiverDirectionSendrecv
	}
	if !c.opts.NoVideo {
		if _, err := cl.addLocalTrack(webrtc.RTPCodecTypeVideo, PurposeUserMedia, c.opts.StreamID, c.opts.VideoTrackID, dir, false); err != nil {
			return fail(err)
		}
	}
	if !c.opts.NoAudio {
		if _, err := cl.addLocalTrack(webrtc.RTPCodecTypeAudio, PurposeUserMedia, c.opts.StreamID, c.opts.AudioTrackID, dir, false); err != nil {
			return fail(err)
		}
	}
	dc, err := pc.CreateDataChannel(DataChannelLabel, nil)
	if err != nil {
		return fail(fmt.Errorf("matrixclient: create data channel: %w", err))
	}
	cl.dc = dc
	dc.OnOpen(func() { cl.dcOpenOnce.Do(func() { close(cl.dcOpen) }) })
	dc.OnMessage(cl.handleDC)
	pc.OnTrack(cl.onTrack)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		c.log.Debug().Str("conf", confID).Str("state", s.String()).Msg("peer connection")
		switch s {
		case webrtc.PeerConnectionStateConnected:
			cl.connectedOnce.Do(func() { close(cl.connected) })
		case webrtc.PeerConnectionStateFailed:
			if !cl.isEnded() {
				c.problem("call %s: peer connection failed", cl.callID)
			}
		}
	})
	if !c.opts.CandidatesInOffer {
		pc.OnICECandidate(cl.onLocalCandidate)
	}
	return cl, nil
}

// base is the callBase of the next outgoing message; the caller holds
// Client.sendMu.
func (cl *call) base() callBase {
	cl.c.mu.Lock()
	dest := cl.focusSession
	cl.c.mu.Unlock()
	b := callBase{
		CallID: cl.callID, ConfID: cl.confID, PartyID: string(cl.c.user.DeviceID), DeviceID: cl.c.user.DeviceID,
		SenderSessionID: cl.sessionID, DestSessionID: dest, Version: callVersion, Seq: cl.seq,
	}
	cl.seq++
	return b
}

// sendSeq sends one to-device message of the call with the next seq;
// content builds it around its callBase.
func (cl *call) sendSeq(ctx context.Context, typ event.Type, content func(callBase) any) error {
	cl.c.sendMu.Lock()
	defer cl.c.sendMu.Unlock()
	return cl.c.sendToDevice(ctx, typ, cl.focus.UserID, cl.focus.DeviceID, content(cl.base()))
}

// onLocalCandidate queues a gathered candidate; nil ends gathering.
func (cl *call) onLocalCandidate(cand *webrtc.ICECandidate) {
	var w wireCandidate
	if cand != nil {
		init := cand.ToJSON()
		w = wireCandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}
	}
	cl.candMu.Lock()
	cl.cands = append(cl.cands, w)
	cl.candMu.Unlock()
	select {
	case cl.candKick <- struct{}{}:
	default:
	}
}

// trickleBatch is how long the client collects candidates before sending
// them in one m.call.candidates.
const trickleBatch = 20 * time.Millisecond

// trickle sends queued candidates after the invite, in batches, until the
// empty end-of-candidates entry has gone out.
func (cl *call) trickle() {
	for {
		select {
		case <-cl.candKick:
		case <-cl.ended:
			return
		}
		select {
		case <-time.After(trickleBatch):
		case <-cl.ended:
			return
		}
		cl.candMu.Lock()
		batch := cl.cands
		cl.cands = nil
		cl.candMu.Unlock()
		if len(batch) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cl.sendSeq(ctx, TypeCandidates, func(b callBase) any {
			return candidatesContent{callBase: b, Candidates: batch}
		})
		cancel()
		if err != nil {
			cl.c.problem("call %s: %v", cl.callID, err)
		}
		if batch[len(batch)-1].Candidate == "" {
			return
		}
	}
}

// handleToDevice takes one to-device message for this call.
func (cl *call) handleToDevice(ctx context.Context, sender id.UserID, typ string, raw []byte) {
	c := cl.c
	if sender != cl.focus.UserID {
		c.problem("%s from %s, not the focus %s", typ, sender, cl.focus.UserID)
		return
	}
	var in incoming
	if err := json.Unmarshal(raw, &in); err != nil {
		c.problem("%s: decode: %v", typ, err)
		return
	}
	if in.CallID != cl.callID {
		c.problem("%s for call %q, not the current call %q", typ, in.CallID, cl.callID)
		return
	}
	cl.checkCommon(typ, &in)
	switch typ {
	case TypeAnswer.Type:
		cl.onAnswer(&in)
	case TypeCandidates.Type:
		cl.onRemoteCandidates(&in)
	case TypeHangup.Type:
		_ = cl.end(in.Reason, true)
	default:
		c.problem("unexpected to-device %s", typ)
	}
}

// checkCommon records departures from the common fields' contract: seq
// 0, 1, 2…; the client's session as destination; one focus session;
// version "1".
func (cl *call) checkCommon(typ string, in *incoming) {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	var probs []string
	switch {
	case in.Seq == nil:
		probs = append(probs, "no seq")
	case *in.Seq != cl.recvSeq:
		probs = append(probs, fmt.Sprintf("seq %d, want %d", *in.Seq, cl.recvSeq))
		cl.recvSeq = *in.Seq + 1
	default:
		cl.recvSeq++
	}
	if in.DestSessionID != cl.sessionID {
		probs = append(probs, fmt.Sprintf("dest_session_id %q, want %q", in.DestSessionID, cl.sessionID))
	}
	if in.SenderSessionID == "" {
		probs = append(probs, "no sender_session_id")
	} else if cl.focusSession != "" && in.SenderSessionID != cl.focusSession {
		probs = append(probs, fmt.Sprintf("sender_session_id %q, answer had %q", in.SenderSessionID, cl.focusSession))
	}
	if in.PartyID == "" {
		probs = append(probs, "no party_id")
	}
	if v := bytes.TrimSpace(in.Version); !bytes.Equal(v, []byte(`"1"`)) && !bytes.Equal(v, []byte(`1`)) {
		probs = append(probs, fmt.Sprintf("version %s, want \"1\"", v))
	}
	if in.ConfID != cl.confID {
		probs = append(probs, fmt.Sprintf("conf_id %q, want %q", in.ConfID, cl.confID))
	}
	for _, p := range probs {
		c.problems = append(c.problems, fmt.Sprintf("%s %s: %s", time.Now().Format("15:04:05.000"), typ, p))
	}
}

func (cl *call) onAnswer(in *incoming) {
	c := cl.c
	select {
	case <-cl.answered:
		c.problem("second m.call.answer for call %s", cl.callID)
		return
	default:
	}
	if in.Answer == nil || in.Answer.Type != "answer" || in.Answer.SDP == "" {
		c.problem("m.call.answer without an answer description")
		return
	}
	if err := cl.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: in.Answer.SDP}); err != nil {
		c.problem("apply m.call.answer: %v", err)
		return
	}
	c.mu.Lock()
	cl.focusSession = in.SenderSessionID
	cl.focusPartyID = in.PartyID
	cl.remoteSet = true
	cands := cl.remoteCands
	cl.remoteCands = nil
	meta := in.metadata()
	if meta == nil {
		c.problems = append(c.problems, "m.call.answer without sdp_stream_metadata")
	}
	cl.available = meta.clone()
	c.mu.Unlock()
	for _, cand := range cands {
		cl.addRemoteCandidate(cand)
	}
	close(cl.answered)
}

func (cl *call) onRemoteCandidates(in *incoming) {
	c := cl.c
	if len(in.Candidates) == 0 {
		c.problem("m.call.candidates with no candidates")
	}
	for _, w := range in.Candidates {
		if w.Candidate == "" {
			c.mu.Lock()
			cl.remoteEOC = true
			c.mu.Unlock()
			continue
		}
		init := webrtc.ICECandidateInit{Candidate: w.Candidate, SDPMid: w.SDPMid, SDPMLineIndex: w.SDPMLineIndex}
		c.mu.Lock()
		if !cl.remoteSet {
			cl.remoteCands = append(cl.remoteCands, init)
			c.mu.Unlock()
			continue
		}
		c.mu.Unlock()
		cl.addRemoteCandidate(init)
	}
}

func (cl *call) addRemoteCandidate(init webrtc.ICECandidateInit) {
	if err := cl.pc.AddICECandidate(init); err != nil {
		cl.c.problem("add candidate %q: %v", init.Candidate, err)
	}
}

func (cl *call) isEnded() bool {
	select {
	case <-cl.ended:
		return true
	default:
		return false
	}
}

// endError is the error for a call that ended while the client waited.
func (cl *call) endError() error {
	cl.c.mu.Lock()
	defer cl.c.mu.Unlock()
	if cl.endedByFocus {
		return &HangupError{Reason: cl.endReason}
	}
	return fmt.Errorf("matrixclient: call ended: %s", cl.endReason)
}

// end stops the call locally, once: media stops and the PeerConnection
// closes. It must not run on a pion callback.
func (cl *call) end(reason string, byFocus bool) error {
	cl.endOnce.Do(func() {
		c := cl.c
		// Closing ended under mu orders it with spawn: every goroutine
		// is either added before Wait or never started.
		c.mu.Lock()
		cl.endReason = reason
		cl.endedByFocus = byFocus
		close(cl.ended)
		c.mu.Unlock()
		c.log.Debug().Str("conf", cl.confID).Str("reason", reason).Bool("by_focus", byFocus).Msg("call ended")
		cl.endErr = cl.pc.GracefulClose()
		cl.wg.Wait()
	})
	return cl.endErr
}

// spawn runs f on a goroutine that end waits for, unless the call has
// ended. It takes Client.mu.
func (cl *call) spawn(f func()) bool {
	cl.c.mu.Lock()
	defer cl.c.mu.Unlock()
	if cl.isEnded() {
		return false
	}
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		f()
	}()
	return true
}

// Hangup sends m.call.hangup with reason and ends the call. The
// membership stays; Leave takes it back too.
func (c *Client) Hangup(ctx context.Context, reason string) error {
	c.mu.Lock()
	cl := c.cur
	c.mu.Unlock()
	if cl == nil || cl.isEnded() {
		return ErrNoCall
	}
	err := cl.sendSeq(ctx, TypeHangup, func(b callBase) any {
		return hangupContent{callBase: b, Reason: reason}
	})
	return errors.Join(err, cl.end(reason, false))
}

// Drop ends the current call locally and tells the focus nothing, as a
// client that crashed or reloaded; the membership stays. A later Invite
// from the same device should replace the old call at the focus.
func (c *Client) Drop() error {
	cl, err := c.current()
	if err != nil {
		return err
	}
	return cl.end("dropped", false)
}

// Leave hangs up (reason "user_hangup") if in a call and removes the
// membership.
func (c *Client) Leave(ctx context.Context) error {
	var errs []error
	if err := c.Hangup(ctx, "user_hangup"); err != nil && !errors.Is(err, ErrNoCall) {
		errs = append(errs, err)
	}
	errs = append(errs, c.RemoveMembership(ctx))
	return errors.Join(errs...)
}

// Ended is closed when the current call ends; nil before any call.
func (c *Client) Ended() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil
	}
	return c.cur.ended
}

// WaitHangup waits until the focus hangs up the current call and returns
// its reason.
func (c *Client) WaitHangup(ctx context.Context) (string, error) {
	c.mu.Lock()
	cl := c.cur
	c.mu.Unlock()
	if cl == nil {
		return "", ErrNoCall
	}
	select {
	case <-cl.ended:
	case <-ctx.Done():
		return "", fmt.Errorf("matrixclient: wait for hangup of call %s: %w", cl.callID, ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !cl.endedByFocus {
		return "", fmt.Errorf("matrixclient: call %s ended by the client: %s", cl.callID, cl.endReason)
	}
	return cl.endReason, nil
}

// CallID is the current call's ID; "" before any call.
func (c *Client) CallID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return ""
	}
	return c.cur.callID
}

// Pings counts the m.call.ping messages the focus sent in this call.
func (c *Client) Pings() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return 0
	}
	return c.cur.pings
}

// current returns the call the client is in, or ErrNoCall.
func (c *Client) current() (*call, error) {
	c.mu.Lock()
	cl := c.cur
	c.mu.Unlock()
	if cl == nil || cl.isEnded() {
		return nil, ErrNoCall
	}
	return cl, nil
}
