// Package matrix is the MSC3898 front-end: Matrix clients call the focus
// with to-device messages, then signal over a WebRTC data channel, and
// the focus forwards media between the members of each call.
package matrix

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/rtc"
)

// Sender sends to-device messages as the focus's device.
type Sender interface {
	SendToDevice(ctx context.Context, user id.UserID, device id.DeviceID, typ event.Type, content any) error
	UserID() id.UserID
	DeviceID() id.DeviceID
}

// Options configure the MSC3898 front-end.
type Options struct {
	SFU         *focus.SFU
	Engine      *rtc.Engine
	Sender      Sender
	Memberships *Memberships
	Policy      Policy
	// MaxParticipantsPerConference and MaxConferences bound the calls;
	// zero means unlimited.
	MaxParticipantsPerConference int
	MaxConferences               int
	// MembershipWait is how long an invite waits for its sender's
	// membership to arrive before it is refused. Zero means 5 s.
	MembershipWait time.Duration
	// PingInterval spaces data-channel pings; PongTimeout hangs up a
	// client that stopped answering. Zero means 10 s and 30 s.
	PingInterval time.Duration
	PongTimeout  time.Duration
	Log          zerolog.Logger
}

// Hangup reasons the focus sends besides the standard ones.
const (
	ReasonNotMember        event.CallHangupReason = "not_a_member"
	ReasonForbidden        event.CallHangupReason = "forbidden"
	ReasonConferenceFull   event.CallHangupReason = "conference_full"
	ReasonServerFull       event.CallHangupReason = "server_full"
	ReasonInvalidOffer     event.CallHangupReason = "invalid_offer"
	ReasonMembershipEnded  event.CallHangupReason = "membership_ended"
	ReasonKeepAliveTimeout event.CallHangupReason = "keep_alive_timeout"
	ReasonReplaced         event.CallHangupReason = "replaced"
	ReasonShutdown         event.CallHangupReason = "focus_shutdown"
)

// deviceKey names one calling device.
type deviceKey struct {
	user   id.UserID
	device id.DeviceID
}

// Focus is the MSC3898 front-end. It implements Inbound.
type Focus struct {
	opts    Options
	log     zerolog.Logger
	session string // the focus's own session ID

	mu      sync.Mutex
	rooms   map[id.RoomID]struct{}
	calls   map[deviceKey]*call
	pending map[deviceKey]*pendingInvite
	byPart  map[focus.ParticipantID]*call
	closed  bool
	wg      sync.WaitGroup

	unsubscribe func()
	counters    toDeviceCounters
}

// New returns the front-end. Feed it with a Transport (it is the
// Transport's Inbound), and call Run for expiry and Close at the end.
func New(opts Options) (*Focus, error) {
	if opts.SFU == nil || opts.Engine == nil || opts.Sender == nil || opts.Memberships == nil {
		return nil, errors.New("matrix: SFU, Engine, Sender and Memberships are required")
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 10 * time.Second
	}
	if opts.PongTimeout <= 0 {
		opts.PongTimeout = 30 * time.Second
	}
	if opts.MembershipWait <= 0 {
		opts.MembershipWait = 5 * time.Second
	}
	f := &Focus{
		opts:    opts,
		log:     opts.Log.With().Str("frontend", "matrix").Logger(),
		session: randomID(),
		rooms:   make(map[id.RoomID]struct{}),
		calls:   make(map[deviceKey]*call),
		pending: make(map[deviceKey]*pendingInvite),
		byPart:  make(map[focus.ParticipantID]*call),
	}
	f.unsubscribe = opts.SFU.OnEvent(f.onEvent)
	return f, nil
}

// confPrefix is the namespace of Matrix calls in the core.
const confPrefix = "m:"

// conferenceID is the core's key for a call: the room and the conf ID.
func conferenceID(room id.RoomID, confID string) focus.ConferenceID {
	return focus.ConferenceID(confPrefix + string(room) + "/" + confID)
}

// RoomEvent implements Inbound: it tracks the rooms the focus is in and
// the call membership in them, and ends the calls of devices that left.
func (f *Focus) RoomEvent(ctx context.Context, evt *event.Event) {
	if evt.Type == event.StateMember && evt.StateKey != nil && id.UserID(*evt.StateKey) == f.opts.Sender.UserID() {
		_ = evt.Content.ParseRaw(evt.Type)
		if m := evt.Content.AsMember(); m != nil {
			switch m.Membership {
			case event.MembershipJoin:
				f.mu.Lock()
				f.rooms[evt.RoomID] = struct{}{}
				f.mu.Unlock()
			case event.MembershipLeave, event.MembershipBan:
				f.RoomLeft(ctx, evt.RoomID)
				return
			}
		}
	}
	f.mu.Lock()
	f.rooms[evt.RoomID] = struct{}{}
	f.mu.Unlock()
	changes, err := f.opts.Memberships.Update(evt)
	if err != nil {
		f.log.Info().Err(err).Str("room", string(evt.RoomID)).Str("type", evt.Type.Type).Str("sender", string(evt.Sender)).Msg("ignored a malformed membership event")
	}
	f.endLeft(ctx, changes)
}

// RoomLeft implements Inbound: the focus is no longer in room, so its
// calls there end.
func (f *Focus) RoomLeft(ctx context.Context, room id.RoomID) {
	f.mu.Lock()
	delete(f.rooms, room)
	f.mu.Unlock()
	f.endLeft(ctx, f.opts.Memberships.ForgetRoom(room))
}

// endLeft hangs up on the devices whose membership ended.
func (f *Focus) endLeft(ctx context.Context, changes []Change) {
	for _, ch := range changes {
		if !ch.Left {
			continue
		}
		f.mu.Lock()
		c := f.calls[deviceKey{ch.Member.UserID, ch.Member.DeviceID}]
		f.mu.Unlock()
		if c != nil && c.room == ch.Member.Room {
			c.log.Info().Msg("membership ended; hanging up")
			c.end(ReasonMembershipEnded, true)
		}
	}
}

// Run expires memberships until ctx ends.
func (f *Focus) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.endLeft(ctx, f.opts.Memberships.Expire())
		}
	}
}

// ToDevice implements Inbound: it takes the m.call.* messages.
func (f *Focus) ToDevice(ctx context.Context, evt *event.Event) {
	log := f.log.With().Str("type", evt.Type.Type).Str("user", string(evt.Sender)).Logger()
	msg, err := ParseToDevice(evt.Type.Type, evt.Content.VeryRaw)
	if errors.Is(err, ErrUnknownType) {
		f.counters.ignored.Add(1)
		log.Debug().Msg("ignoring to-device message")
		return
	}
	if err != nil {
		f.counters.failed.Add(1)
		log.Warn().Err(err).Msg("rejected to-device message")
		f.rejectMalformed(ctx, evt, err)
		return
	}
	if _, ok := msg.(*Answer); ok {
		f.counters.failed.Add(1)
	} else {
		f.counters.handled.Add(1)
	}
	switch m := msg.(type) {
	case *Invite:
		f.onInvite(ctx, evt.Sender, m)
	case *Candidates:
		f.route(evt.Sender, &m.CallBase, log, func(c *call) { c.onCandidates(m) })
	case *SelectAnswer:
		f.route(evt.Sender, &m.CallBase, log, func(c *call) { c.onSelectAnswer(m) })
	case *Hangup:
		f.route(evt.Sender, &m.CallBase, log, func(c *call) {
			c.log.Info().Str("reason", string(m.Reason)).Msg("client hung up")
			c.end(m.Reason, false)
		})
	case *Answer:
		log.Warn().Str("call", m.CallID).Msg("rejected m.call.answer: the focus never calls out")
	}
}

// route runs fn on the call a message belongs to.
func (f *Focus) route(sender id.UserID, b *CallBase, log zerolog.Logger, fn func(*call)) {
	key := deviceKey{sender, senderDevice(b)}
	f.mu.Lock()
	if p := f.pending[key]; p != nil && p.callID == b.CallID && len(p.queued) < maxQueued {
		p.queued = append(p.queued, fn)
		f.mu.Unlock()
		return
	}
	c := f.calls[key]
	f.mu.Unlock()
	if c == nil || c.callID != b.CallID {
		log.Info().Str("call", b.CallID).Str("device", string(senderDevice(b))).Msg("message for an unknown call")
		return
	}
	c.do(func() { fn(c) })
}

func senderDevice(b *CallBase) id.DeviceID {
	if b.DeviceID != "" {
		return b.DeviceID
	}
	return id.DeviceID(b.PartyID)
}

// rejectMalformed answers a malformed m.call.* message with a hangup when
// it names a call to hang up.
func (f *Focus) rejectMalformed(ctx context.Context, evt *event.Event, cause error) {
	var b CallBase
	if json := evt.Content.VeryRaw; len(json) > 0 && len(json) <= MaxMessageSize {
		_ = unmarshalLenient(json, &b)
	}
	if b.CallID == "" || senderDevice(&b) == "" || evt.Type.Type == TypeHangup.Type {
		return
	}
	f.hangup(ctx, evt.Sender, &b, event.CallHangupReason("invalid_message"))
}

func (f *Focus) onInvite(ctx context.Context, sender id.UserID, inv *Invite) {
	device := senderDevice(&inv.CallBase)
	log := f.log.With().Str("user", string(sender)).Str("device", string(device)).Str("call", inv.CallID).Str("conf", inv.ConfID).Logger()
	if err := f.opts.Policy.AllowUser(sender); err != nil {
		log.Warn().Err(err).Msg("invite refused by policy")
		f.hangup(ctx, sender, &inv.CallBase, ReasonForbidden)
		return
	}
	if member, ok := f.findMember(sender, device, inv.ConfID); ok {
		f.accept(ctx, sender, device, member, inv, nil, log)
		return
	}
	// The membership may still be on its way: it comes with the room's
	// events, the invite with to-device messages, and the two paths keep
	// no order between them. Wait for it a little, and keep what else the
	// device sends for this call meanwhile.
	key := deviceKey{sender, device}
	p := &pendingInvite{callID: inv.CallID}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		f.hangup(ctx, sender, &inv.CallBase, ReasonShutdown)
		return
	}
	f.pending[key] = p
	f.wg.Add(1)
	f.mu.Unlock()
	log.Debug().Msg("invite before the membership; waiting for it")
	go f.awaitMember(sender, device, inv, p, log)
}

// pendingInvite is an invite waiting for its sender's membership, with
// the messages of its call that came after it.
type pendingInvite struct {
	callID string
	queued []func(*call)
}

// maxQueued bounds the messages kept for a pending invite.
const maxQueued = 64

func (f *Focus) awaitMember(sender id.UserID, device id.DeviceID, inv *Invite, p *pendingInvite, log zerolog.Logger) {
	defer f.wg.Done()
	key := deviceKey{sender, device}
	deadline := time.Now().Add(f.opts.MembershipWait)
	for {
		member, ok := f.findMember(sender, device, inv.ConfID)
		f.mu.Lock()
		closed, current := f.closed, f.pending[key] == p
		done := !current || ok || closed || time.Now().After(deadline)
		if done && current {
			delete(f.pending, key)
		}
		queued := p.queued
		f.mu.Unlock()
		if !current {
			return // a newer invite from the device took over
		}
		if done {
			ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
			defer cancel()
			switch {
			case closed:
				f.hangup(ctx, sender, &inv.CallBase, ReasonShutdown)
			case !ok:
				log.Warn().Msg("invite from a device that is not a member of the call in any room the focus is in")
				f.hangup(ctx, sender, &inv.CallBase, ReasonNotMember)
			default:
				f.accept(ctx, sender, device, member, inv, queued, log)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// accept starts the call of an invite from a member, then applies the
// messages that came after the invite.
func (f *Focus) accept(ctx context.Context, sender id.UserID, device id.DeviceID, member Member, inv *Invite, queued []func(*call), log zerolog.Logger) {
	if err := f.opts.Policy.AllowRoom(member.Room); err != nil {
		log.Warn().Err(err).Msg("invite refused by policy")
		f.hangup(ctx, sender, &inv.CallBase, ReasonForbidden)
		return
	}
	conf := conferenceID(member.Room, inv.ConfID)
	key := deviceKey{sender, device}

	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		f.hangup(ctx, sender, &inv.CallBase, ReasonShutdown)
		return
	}
	old := f.calls[key]
	if max := f.opts.MaxConferences; max > 0 && !f.hasConferenceLocked(conf) && f.conferencesLocked() >= max {
		f.mu.Unlock()
		log.Warn().Int("max", max).Msg("invite refused: too many conferences")
		f.hangup(ctx, sender, &inv.CallBase, ReasonServerFull)
		return
	}
	f.mu.Unlock()
	if old != nil {
		old.log.Info().Msg("a new invite from the same device replaces this call")
		old.end(ReasonReplaced, false)
	}
	if max := f.opts.MaxParticipantsPerConference; max > 0 {
		if c := f.opts.SFU.Conference(conf); c != nil && len(c.Participants()) >= max {
			log.Warn().Int("max", max).Msg("invite refused: conference is full")
			f.hangup(ctx, sender, &inv.CallBase, ReasonConferenceFull)
			return
		}
	}
	c, err := f.newCall(sender, device, member.Room, inv, log)
	if err != nil {
		reason := event.CallHangupUnknownError
		if errors.Is(err, focus.ErrConferenceFull) {
			reason = ReasonConferenceFull
		} else if errors.Is(err, focus.ErrServerFull) || errors.Is(err, focus.ErrClosed) {
			reason = ReasonServerFull
		}
		log.Warn().Err(err).Msg("invite refused")
		f.hangup(ctx, sender, &inv.CallBase, reason)
		return
	}
	c.do(func() { c.start(inv) })
	for _, fn := range queued {
		c.do(func() { fn(c) })
	}
}

func (f *Focus) hasConferenceLocked(conf focus.ConferenceID) bool {
	for _, c := range f.calls {
		if c.conf == conf {
			return true
		}
	}
	return false
}

func (f *Focus) conferencesLocked() int {
	seen := map[focus.ConferenceID]bool{}
	for _, c := range f.calls {
		seen[c.conf] = true
	}
	return len(seen)
}

// findMember looks for the device's current membership of call confID in
// the rooms the focus is in.
func (f *Focus) findMember(user id.UserID, device id.DeviceID, confID string) (Member, bool) {
	f.mu.Lock()
	rooms := make([]id.RoomID, 0, len(f.rooms))
	for r := range f.rooms {
		rooms = append(rooms, r)
	}
	f.mu.Unlock()
	for _, r := range rooms {
		if m, ok := f.opts.Memberships.LookupCall(r, user, device, confID); ok {
			return m, true
		}
	}
	return Member{}, false
}

// hangup sends m.call.hangup for a call the focus has no state for.
func (f *Focus) hangup(ctx context.Context, user id.UserID, b *CallBase, reason event.CallHangupReason) {
	msg := &Hangup{CallBase: f.replyBase(b), Reason: reason}
	msg.SetSeq(0)
	if err := f.opts.Sender.SendToDevice(ctx, user, senderDevice(b), TypeHangup, msg); err != nil {
		f.log.Warn().Err(err).Str("user", string(user)).Msg("send hangup")
	}
}

// replyBase addresses a reply to the sender of b.
func (f *Focus) replyBase(b *CallBase) CallBase {
	dev := f.opts.Sender.DeviceID()
	return CallBase{
		CallID:          b.CallID,
		ConfID:          b.ConfID,
		PartyID:         string(dev),
		DeviceID:        dev,
		SenderSessionID: f.session,
		DestSessionID:   b.SenderSessionID,
		Version:         ProtocolVersion,
	}
}

// callsIn returns the calls of a conference.
func (f *Focus) callsIn(conf focus.ConferenceID) []*call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*call
	for _, c := range f.calls {
		if c.conf == conf {
			out = append(out, c)
		}
	}
	return out
}

// onEvent tells the calls of a conference when its tracks change, who
// speaks, and tells a call when one of its subscriptions is paused for
// bandwidth or when the demand for one of its tracks changes.
func (f *Focus) onEvent(ev focus.Event) {
	switch ev := ev.(type) {
	case focus.TrackPublished:
		f.tracksChanged(ev.Conference, ev.Participant, nil)
	case focus.TrackUnpublished:
		f.tracksChanged(ev.Conference, ev.Participant, ev.Track)
	case focus.SpeakersChanged:
		for _, c := range f.callsOf(ev.Conference) {
			c.do(func() { c.sendSpeakers(ev.Speakers) })
		}
	case focus.SubscriptionPaused:
		if c := f.callOf(ev.Down.Subscriber()); c != nil {
			c.do(func() { c.subscriptionPaused(ev.Down) })
		}
	case focus.DemandChanged:
		if c := f.callOf(ev.Track.Owner()); c != nil {
			c.do(func() { c.demandChanged(ev.Track, ev.Wanted) })
		}
	}
}

// callsOf returns the calls of every Matrix name of conf: its own, or an
// alias when another front-end shares the conference.
func (f *Focus) callsOf(conf *focus.Conference) []*call {
	var out []*call
	for _, name := range conf.Names() {
		if strings.HasPrefix(string(name), confPrefix) {
			out = append(out, f.callsIn(name)...)
		}
	}
	return out
}

// tracksChanged tells the calls of conf that its tracks changed.
func (f *Focus) tracksChanged(conf *focus.Conference, owner *focus.Participant, gone *focus.UpTrack) {
	for _, c := range f.callsOf(conf) {
		if c.part == owner {
			continue
		}
		c.do(func() {
			if gone != nil {
				c.dropSubscriptionsTo(gone)
			}
			c.sendMetadata()
		})
	}
}

// metadataChanged tells every other call of the conference that a
// publisher's stream metadata changed.
func (f *Focus) metadataChanged(from *call) {
	for _, c := range f.callsOf(from.part.Conference()) {
		if c != from {
			c.do(c.sendMetadata)
		}
	}
}

// Close hangs up every call and waits for them to end, or ctx.
func (f *Focus) Close(ctx context.Context) error {
	f.mu.Lock()
	f.closed = true
	calls := make([]*call, 0, len(f.calls))
	for _, c := range f.calls {
		calls = append(calls, c)
	}
	f.mu.Unlock()
	f.unsubscribe()
	for _, c := range calls {
		c.end(ReasonShutdown, true)
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("matrix: close: %w", ctx.Err())
	}
}
