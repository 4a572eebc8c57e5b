package matrixclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/pion/webrtc/v4"
)

// The focus is the impolite peer: when offers cross on the data channel
// it keeps its own and ignores the client's, expecting the client to roll
// back. pion cannot roll back a local offer (SetLocalDescription of type
// rollback fails in have-local-offer), so this client is polite another
// way: it never lets the PeerConnection leave the stable state for its
// own offers until the answer is in hand.
//
//   - To offer, it calls CreateOffer and sends the SDP, but does not apply
//     it. The PeerConnection stays stable; the offer is only pending.
//   - When the focus's answer arrives, it applies the pending offer and
//     the answer back to back (SetLocalDescription then
//     SetRemoteDescription). An answer whose MIDs are not the pending
//     offer's is stale and is dropped.
//   - When a focus offer arrives while its own is pending, offers crossed:
//     the client drops its pending offer (that is its rollback, and since
//     it was never applied there is nothing to undo), answers the focus,
//     and offers again once stable. The focus, having ignored the first
//     offer, answers the second.
//
// One trap remains. CreateOffer assigns a MID to every transceiver that
// lacks one, and pion picks the next number after the highest it knows,
// which is exactly the number the focus picks for the m-line it adds in a
// crossing offer. pion would then match the focus's new m-line to the
// client's unnegotiated transceiver by MID. So transceivers the client
// adds after the first offer get a MID of its own ("c1", "c2", …) before
// any offer: they cannot collide with the focus's numbers, and CreateAnswer
// leaves them out until the client's next offer.
//
// Changes made while an offer is pending or a focus offer is being
// answered are not lost: the flag want makes the next stable moment send
// an offer carrying all of them.
type negotiator struct {
	mu          sync.Mutex
	pending     *webrtc.SessionDescription
	pendingMids []string
	want        bool
	// gen counts local changes; applied is the gen the focus last
	// answered.
	gen, offeredGen, applied int
	stats                    NegotiationStats
}

// NegotiationStats counts the renegotiations on the data channel.
type NegotiationStats struct {
	OffersSent, AnswersReceived int
	OffersReceived, AnswersSent int
	// Glares counts focus offers that crossed a pending client offer.
	Glares int
	// StaleAnswers counts answers that matched no pending offer.
	StaleAnswers int
}

// Negotiation returns the renegotiation counts of the current call.
func (c *Client) Negotiation() NegotiationStats {
	cl, err := c.current()
	if err != nil {
		return NegotiationStats{}
	}
	cl.neg.mu.Lock()
	defer cl.neg.mu.Unlock()
	return cl.neg.stats
}

// offer sends an offer for the local changes if the client may now; if
// not, it leaves want set for the next stable moment.
func (cl *call) offer() error {
	n := &cl.neg
	n.mu.Lock()
	defer n.mu.Unlock()
	return cl.offerLocked()
}

func (cl *call) offerLocked() error {
	n := &cl.neg
	if n.pending != nil || cl.pc.SignalingState() != webrtc.SignalingStateStable {
		n.want = true
		return nil
	}
	n.want = false
	o, err := cl.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("matrixclient: create offer: %w", err)
	}
	ms, err := mids(o.SDP)
	if err != nil {
		return err
	}
	n.pending, n.pendingMids, n.offeredGen = &o, ms, n.gen
	n.stats.OffersSent++
	return cl.sendDC(DCNegotiate, negotiateContent{
		Description: sessionDescription{Type: "offer", SDP: o.SDP},
		Metadata:    cl.localMetadata(),
	})
}

// onRemoteOffer answers an offer from the focus.
func (cl *call) onRemoteOffer(d sessionDescription, meta Metadata) {
	c := cl.c
	n := &cl.neg
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stats.OffersReceived++
	if n.pending != nil {
		n.stats.Glares++
		n.pending, n.pendingMids = nil, nil
		n.want = true
		c.log.Debug().Str("conf", cl.confID).Msg("offers crossed: dropping the client's")
	}
	if err := cl.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: d.SDP}); err != nil {
		c.problem("apply m.call.negotiate offer: %v", err)
		return
	}
	a, err := cl.pc.CreateAnswer(nil)
	if err == nil {
		err = cl.pc.SetLocalDescription(a)
	}
	if err != nil {
		c.problem("answer m.call.negotiate offer: %v", err)
		return
	}
	cl.mergeAvailable(meta)
	n.stats.AnswersSent++
	if err := cl.sendDC(DCNegotiate, negotiateContent{
		Description: sessionDescription{Type: "answer", SDP: a.SDP},
		Metadata:    cl.localMetadata(),
	}); err != nil {
		c.problem("%v", err)
	}
	if n.want {
		if err := cl.offerLocked(); err != nil {
			c.problem("%v", err)
		}
	}
}

// onRemoteAnswer applies the focus's answer to the pending offer.
func (cl *call) onRemoteAnswer(d sessionDescription, meta Metadata) {
	c := cl.c
	n := &cl.neg
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stats.AnswersReceived++
	ms, err := mids(d.SDP)
	if err != nil {
		c.problem("m.call.negotiate answer: %v", err)
		return
	}
	if n.pending == nil || !slices.Equal(ms, n.pendingMids) {
		n.stats.StaleAnswers++
		c.problem("m.call.negotiate answer (MIDs %v) matches no pending offer (MIDs %v)", ms, n.pendingMids)
		return
	}
	o := *n.pending
	n.pending, n.pendingMids = nil, nil
	if err := cl.pc.SetLocalDescription(o); err != nil {
		c.problem("apply own offer: %v", err)
		return
	}
	if err := cl.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: d.SDP}); err != nil {
		c.problem("apply m.call.negotiate answer: %v", err)
		return
	}
	n.applied = n.offeredGen
	cl.mergeAvailable(meta)
	if n.want {
		if err := cl.offerLocked(); err != nil {
			c.problem("%v", err)
		}
	}
}

// change records a local change that needs an offer and sends one if it
// can; it returns the change's generation for waitApplied.
func (cl *call) change() (int, error) {
	n := &cl.neg
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gen++
	return n.gen, cl.offerLocked()
}

// waitApplied waits until the focus answered an offer carrying change gen.
func (cl *call) waitApplied(ctx context.Context, gen int) error {
	return waitFor(ctx, fmt.Sprintf("the answer to local change %d", gen), func() bool {
		cl.neg.mu.Lock()
		defer cl.neg.mu.Unlock()
		return cl.neg.applied >= gen || cl.isEnded()
	})
}

// handleDC takes one data-channel message. It runs on pion's reader for
// the channel, so messages are handled one at a time, in order.
func (cl *call) handleDC(msg webrtc.DataChannelMessage) {
	c := cl.c
	var env dcMessage
	err := json.Unmarshal(msg.Data, &env)
	c.record(Message{Via: ViaDataChannel, Type: env.Type, Content: msg.Data})
	if err != nil {
		c.problem("data channel: decode: %v", err)
		return
	}
	switch env.Type {
	case DCPing:
		c.mu.Lock()
		cl.pings++
		c.mu.Unlock()
		if err := cl.sendDC(DCPong, struct{}{}); err != nil {
			c.problem("%v", err)
		}
	case DCNegotiate:
		var n negotiateContent
		if err := json.Unmarshal(env.Content, &n); err != nil {
			c.problem("m.call.negotiate: decode: %v", err)
			return
		}
		switch n.Description.Type {
		case "offer":
			cl.onRemoteOffer(n.Description, n.Metadata)
		case "answer":
			cl.onRemoteAnswer(n.Description, n.Metadata)
		default:
			c.problem("m.call.negotiate: description type %q", n.Description.Type)
		}
	case DCMetadataChanged:
		var m metadataChangedContent
		if err := json.Unmarshal(env.Content, &m); err != nil {
			c.problem("%s: decode: %v", DCMetadataChanged, err)
			return
		}
		if m.Metadata == nil {
			c.problem("%s without sdp_stream_metadata", DCMetadataChanged)
		}
		c.mu.Lock()
		cl.available = m.Metadata.clone()
		c.mu.Unlock()
	case DCActiveSpeakers, DCSubscriptionState, DCPublishLayers:
		// Recorded above; nothing to do.
	default:
		c.problem("data channel: unexpected type %q", env.Type)
	}
}

// sendDC sends one data-channel message.
func (cl *call) sendDC(typ string, content any) error {
	b, err := encodeDC(typ, content)
	if err != nil {
		return err
	}
	if err := cl.dc.SendText(string(b)); err != nil {
		return fmt.Errorf("matrixclient: send %s on the data channel: %w", typ, err)
	}
	cl.c.record(Message{Sent: true, Via: ViaDataChannel, Type: typ, Content: b})
	return nil
}

// mergeAvailable adds the streams a negotiate message describes to what
// the focus announced. Only the answer and metadata_changed replace the
// whole set: a negotiate offer may describe only the streams it carries.
func (cl *call) mergeAvailable(meta Metadata) {
	if meta == nil {
		return
	}
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl.available == nil {
		cl.available = make(Metadata)
	}
	for k, s := range meta.clone() {
		if s.UserID == c.user.UserID && s.DeviceID == c.user.DeviceID {
			continue // the client's own stream, echoed
		}
		cl.available[k] = s
	}
}

// AvailableStreams lists the streams the focus announced (in its answer,
// in metadata_changed, and in its negotiate offers), sorted by ID.
func (c *Client) AvailableStreams() []Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil
	}
	return sortedStreams(c.cur.available)
}

// WaitStreams waits until ok accepts the announced streams and returns
// them.
func (c *Client) WaitStreams(ctx context.Context, ok func([]Stream) bool) ([]Stream, error) {
	var s []Stream
	err := waitFor(ctx, "announced streams", func() bool {
		s = c.AvailableStreams()
		return ok(s)
	})
	if err != nil {
		return s, fmt.Errorf("%w (have %d: %+v)", err, len(s), s)
	}
	return s, nil
}

// Subscribe asks the focus for tracks, each at the size it announced.
func (c *Client) Subscribe(ctx context.Context, refs ...TrackRef) error {
	cl, err := c.current()
	if err != nil {
		return err
	}
	c.mu.Lock()
	subs := make([]subscription, 0, len(refs))
	for _, r := range refs {
		s := subscription{TrackRef: r}
		if tm, ok := cl.available[r.StreamID].Tracks[r.TrackID]; ok {
			s.Width, s.Height = tm.Width, tm.Height
		}
		subs = append(subs, s)
	}
	c.mu.Unlock()
	return cl.sendDC(DCTrackSubscription, trackSubscriptionContent{Subscribe: subs})
}

// Unsubscribe tells the focus to stop sending tracks.
func (c *Client) Unsubscribe(ctx context.Context, refs ...TrackRef) error {
	cl, err := c.current()
	if err != nil {
		return err
	}
	return cl.sendDC(DCTrackSubscription, trackSubscriptionContent{Unsubscribe: refs})
}

// AddScreenShare adds a video track with purpose m.screenshare in a new
// stream, offers it to the focus on the data channel with updated
// metadata, starts sending once the focus answered, and returns the
// track.
func (c *Client) AddScreenShare(ctx context.Context) (TrackRef, error) {
	cl, err := c.current()
	if err != nil {
		return TrackRef{}, err
	}
	t, err := cl.addLocalTrack(webrtc.RTPCodecTypeVideo, PurposeScreenShare, randomID(16), randomID(16),
		webrtc.RTPTransceiverDirectionSendonly, true)
	if err != nil {
		return TrackRef{}, err
	}
	gen, err := cl.change()
	if err != nil {
		return t.ref, err
	}
	if err := cl.waitApplied(ctx, gen); err != nil {
		return t.ref, err
	}
	if cl.isEnded() {
		return t.ref, errors.Join(ErrNoCall, cl.endError())
	}
	cl.startSending(t)
	return t.ref, nil
}

// SendMetadataChanged tells the focus the client's current metadata, as
// a client does after muting.
func (c *Client) SendMetadataChanged(ctx context.Context) error {
	cl, err := c.current()
	if err != nil {
		return err
	}
	return cl.sendDC(DCMetadataChanged, metadataChangedContent{Metadata: cl.localMetadata()})
}
