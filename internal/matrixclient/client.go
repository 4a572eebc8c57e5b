// Package matrixclient is a Matrix user calling an MSC3898 focus, for
// tests: a mautrix client against a real homeserver that publishes call
// membership, signals over to-device messages with its own /sync loop,
// and a pion PeerConnection that sends synthetic VP8 and Opus
// (internal/testclient's payloads) and checks every track it receives.
//
// The wire format is the one in docs/matrix.md ("Wire protocol"). The client
// records every message it sends and receives (Messages) and every
// departure from that format it notices in the focus's messages
// (Problems), so that a failing test can say what went over the wire.
package matrixclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// User is a logged-in Matrix device.
type User struct {
	UserID      id.UserID
	AccessToken string
	DeviceID    id.DeviceID
}

// Options tune a Client. The zero value is usable.
type Options struct {
	// LegacyMembership publishes the MSC3401 m.call.member event instead
	// of the per-device org.matrix.msc3401.call.member.
	LegacyMembership bool
	// MembershipExpiry is how long the membership claims to last
	// (default 4 h).
	MembershipExpiry time.Duration
	// CandidatesInOffer waits for ICE gathering to finish and sends the
	// candidates inside the offer, with no m.call.candidates. By default
	// the client trickles them, ending with an empty candidate.
	CandidatesInOffer bool
	// SendRecv makes the media transceivers sendrecv instead of sendonly.
	SendRecv bool
	// NoSelectAnswer leaves out the m.call.select_answer that
	// matrix-js-sdk sends once answered.
	NoSelectAnswer bool
	// StreamID, VideoTrackID and AudioTrackID name the user-media stream
	// and its tracks; random when empty. Two clients given the same IDs
	// test the focus's collision handling.
	StreamID, VideoTrackID, AudioTrackID string
	// NoVideo and NoAudio leave out a user-media track.
	NoVideo, NoAudio bool
	// Media paces the synthetic media.
	Media MediaOptions
	// Encryptor, when set, encrypts every to-device message the client
	// sends and decrypts the encrypted ones it receives; nil sends
	// plaintext. The caller closes it after the Client.
	Encryptor Encryptor
	// SyncTimeout is the /sync long-poll timeout (default 5 s).
	SyncTimeout time.Duration
	// Log receives the client's log; the zero value logs nothing.
	Log zerolog.Logger
}

// MediaOptions pace the synthetic media, as testclient.PublishOptions do.
type MediaOptions struct {
	// VideoPPS is the video packet rate (default 100); FPS the frame
	// rate the packets are grouped into (default 30).
	VideoPPS, FPS int
	// VideoPacketSize and AudioPacketSize are RTP payload sizes in bytes
	// (defaults 1000 and 100).
	VideoPacketSize, AudioPacketSize int
	// KeyframeInterval is the time between unrequested keyframes
	// (default 1 s); a PLI or FIR brings the next one forward.
	KeyframeInterval time.Duration
}

func (o *Options) setDefaults() {
	if o.MembershipExpiry <= 0 {
		o.MembershipExpiry = 4 * time.Hour
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = 5 * time.Second
	}
	m := &o.Media
	if m.VideoPPS <= 0 {
		m.VideoPPS = 100
	}
	if m.FPS <= 0 {
		m.FPS = 30
	}
	if m.VideoPacketSize <= 0 {
		m.VideoPacketSize = 1000
	}
	if m.AudioPacketSize <= 0 {
		m.AudioPacketSize = 100
	}
	if m.KeyframeInterval <= 0 {
		m.KeyframeInterval = time.Second
	}
	if o.StreamID == "" {
		o.StreamID = randomID(16)
	}
	if o.VideoTrackID == "" {
		o.VideoTrackID = randomID(16)
	}
	if o.AudioTrackID == "" {
		o.AudioTrackID = randomID(16)
	}
}

// Message is one signalling message the client sent or received.
type Message struct {
	At time.Time
	// Sent is set for messages the client sent.
	Sent bool
	// Via is "to-device" or "datachannel".
	Via string
	// Type is the event or data-channel message type.
	Type string
	// Sender is the sender of a received to-device message.
	Sender id.UserID
	// Encrypted is set for a to-device message that went over the wire
	// as m.room.encrypted; Type and Content are what it decrypts to.
	Encrypted bool
	Content   json.RawMessage
}

// Where a message went.
const (
	ViaToDevice    = "to-device"
	ViaDataChannel = "datachannel"
)

func (m Message) String() string {
	dir := "<-"
	if m.Sent {
		dir = "->"
	}
	content := string(m.Content)
	if len(content) > 300 {
		content = content[:300] + "…"
	}
	via := m.Via
	if m.Encrypted {
		via += " (encrypted)"
	}
	return fmt.Sprintf("%s %s %s %s %s", m.At.Format("15:04:05.000"), dir, via, m.Type, content)
}

// Client is one Matrix device in at most one call at a time.
type Client struct {
	mx   *mautrix.Client
	user User
	opts Options
	log  zerolog.Logger
	http *http.Client

	syncCancel context.CancelFunc
	syncDone   chan struct{}
	filterID   string
	since      string

	// sendMu orders to-device sends, so that seq order is send order.
	sendMu sync.Mutex

	mu         sync.Mutex
	session    string
	cur        *call
	membership *membershipRef
	msgs       []Message
	problems   []string
	closed     bool
}

// membershipRef is what the client last published, to take it back.
type membershipRef struct {
	room   id.RoomID
	confID string
}

// New makes a client for an existing device: it uses user's access token
// against the homeserver at hsURL, makes a first /sync (so that a bad
// token fails here) and keeps syncing for to-device messages until Close.
func New(ctx context.Context, hsURL string, user User, opts Options) (*Client, error) {
	opts.setDefaults()
	mx, err := mautrix.NewClient(hsURL, user.UserID, user.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("matrixclient: %s: %w", user.UserID, err)
	}
	mx.DeviceID = user.DeviceID
	hc := &http.Client{Transport: &http.Transport{}, Timeout: opts.SyncTimeout + 30*time.Second}
	mx.Client = hc
	c := &Client{
		mx: mx, user: user, opts: opts, http: hc,
		log:      opts.Log.With().Str("user", string(user.UserID)).Str("device", string(user.DeviceID)).Logger(),
		syncDone: make(chan struct{}),
	}
	// Only to-device messages matter: no room history, state or presence.
	none := []event.Type{{Type: "*"}}
	filter := &mautrix.Filter{
		AccountData: &mautrix.FilterPart{NotTypes: none},
		Presence:    &mautrix.FilterPart{NotTypes: none},
		Room: &mautrix.RoomFilter{
			AccountData: &mautrix.FilterPart{NotTypes: none},
			Ephemeral:   &mautrix.FilterPart{NotTypes: none},
			State:       &mautrix.FilterPart{NotTypes: none},
			Timeline:    &mautrix.FilterPart{NotTypes: none, Limit: 1},
		},
	}
	fr, err := mx.CreateFilter(ctx, filter)
	if err != nil {
		hc.CloseIdleConnections()
		return nil, fmt.Errorf("matrixclient: %s: create filter: %w", user.UserID, err)
	}
	c.filterID = fr.FilterID
	if err := c.syncOnce(ctx, 0); err != nil {
		hc.CloseIdleConnections()
		return nil, fmt.Errorf("matrixclient: %s: first sync: %w", user.UserID, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	c.syncCancel = cancel
	go c.syncLoop(sctx)
	return c, nil
}

// Matrix is the client's mautrix client, for what this package does not
// wrap (joining rooms, reading state).
func (c *Client) Matrix() *mautrix.Client { return c.mx }

// UserID and DeviceID name the client.
func (c *Client) UserID() id.UserID     { return c.user.UserID }
func (c *Client) DeviceID() id.DeviceID { return c.user.DeviceID }

// syncOnce runs one /sync and handles its to-device messages.
func (c *Client) syncOnce(ctx context.Context, timeout time.Duration) error {
	resp, err := c.mx.FullSyncRequest(ctx, mautrix.ReqSync{
		Timeout:  int(timeout.Milliseconds()),
		Since:    c.since,
		FilterID: c.filterID,
	})
	if err != nil {
		return err
	}
	c.since = resp.NextBatch
	for _, evt := range resp.ToDevice.Events {
		c.handleToDevice(ctx, evt)
	}
	return nil
}

func (c *Client) syncLoop(ctx context.Context) {
	defer close(c.syncDone)
	for ctx.Err() == nil {
		if err := c.syncOnce(ctx, c.opts.SyncTimeout); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn().Err(err).Msg("sync failed")
			c.problem("sync: %v", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

// handleToDevice takes one to-device event from /sync.
func (c *Client) handleToDevice(ctx context.Context, evt *event.Event) {
	typ, raw, encrypted, ok := c.open(ctx, evt)
	c.record(Message{Via: ViaToDevice, Type: typ, Sender: evt.Sender, Encrypted: encrypted, Content: raw})
	if !ok {
		return
	}
	c.mu.Lock()
	cl := c.cur
	c.mu.Unlock()
	if cl == nil {
		c.problem("to-device %s from %s with no call", typ, evt.Sender)
		return
	}
	cl.handleToDevice(ctx, evt.Sender, typ, raw)
}

// sendToDevice sends one message to one device. The caller holds sendMu
// when the message carries a seq.
func (c *Client) sendToDevice(ctx context.Context, typ event.Type, user id.UserID, device id.DeviceID, content any) error {
	raw, err := json.Marshal(content)
	if err != nil {
		return fmt.Errorf("matrixclient: encode %s: %w", typ.Type, err)
	}
	wireType, wire, err := c.seal(ctx, typ, user, device, raw)
	if err != nil {
		return fmt.Errorf("matrixclient: encrypt %s to %s/%s: %w", typ.Type, user, device, err)
	}
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
		user: {device: {VeryRaw: wire}},
	}}
	if _, err := c.mx.SendToDevice(ctx, wireType, req); err != nil {
		return fmt.Errorf("matrixclient: send %s to %s/%s: %w", typ.Type, user, device, err)
	}
	c.record(Message{Sent: true, Via: ViaToDevice, Type: typ.Type, Encrypted: wireType.Type != typ.Type, Content: raw})
	return nil
}

func (c *Client) record(m Message) {
	if m.At.IsZero() {
		m.At = time.Now()
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	c.log.Debug().Bool("sent", m.Sent).Str("via", m.Via).Str("type", m.Type).RawJSON("content", validJSON(m.Content)).Msg("signalling")
}

// validJSON keeps a log line valid when content is not JSON.
func validJSON(b []byte) []byte {
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}

// problem records something the focus did that the wire format does not
// allow, or that the client could not handle.
func (c *Client) problem(format string, args ...any) {
	p := fmt.Sprintf(format, args...)
	c.log.Warn().Str("problem", p).Msg("protocol problem")
	c.mu.Lock()
	c.problems = append(c.problems, time.Now().Format("15:04:05.000")+" "+p)
	c.mu.Unlock()
}

// Messages returns every signalling message so far, in order.
func (c *Client) Messages() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.msgs...)
}

// MessagesOfType returns the messages of one type, in order.
func (c *Client) MessagesOfType(typ string) []Message {
	var out []Message
	for _, m := range c.Messages() {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// Problems lists what the client found wrong with the focus's messages.
func (c *Client) Problems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.problems...)
}

// Transcript is every message and problem as text, for a failing test.
func (c *Client) Transcript() string {
	var b []byte
	b = fmt.Appendf(b, "%s/%s:\n", c.user.UserID, c.user.DeviceID)
	for _, m := range c.Messages() {
		b = fmt.Appendf(b, "  %s\n", m)
	}
	for _, p := range c.Problems() {
		b = fmt.Appendf(b, "  problem: %s\n", p)
	}
	return string(b)
}

// Close ends the call without a goodbye (no hangup, membership left as
// it is), stops syncing and closes idle connections.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cl := c.cur
	c.mu.Unlock()
	var errs []error
	if cl != nil {
		errs = append(errs, cl.end("client closed", false))
	}
	c.syncCancel()
	<-c.syncDone
	c.http.CloseIdleConnections()
	return errors.Join(errs...)
}

// randomID returns n random bytes in hex.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sortedStreams returns m as a list sorted by stream ID.
func sortedStreams(m Metadata) []Stream {
	out := make([]Stream, 0, len(m))
	for k, s := range m {
		out = append(out, Stream{ID: k, StreamMeta: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Stream is one stream the focus announced.
type Stream struct {
	ID string
	StreamMeta
}

// Refs lists the stream's tracks, sorted by track ID.
func (s Stream) Refs() []TrackRef {
	out := make([]TrackRef, 0, len(s.Tracks))
	for k := range s.Tracks {
		out = append(out, TrackRef{StreamID: s.ID, TrackID: k})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TrackID < out[j].TrackID })
	return out
}

// waitFor polls cond every 10 ms until it holds or ctx ends.
func waitFor(ctx context.Context, what string, cond func() bool) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("matrixclient: wait for %s: %w", what, ctx.Err())
		}
	}
	return nil
}
