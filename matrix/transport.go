// Package matrix is the focus's Matrix front-end: MSC3898 calls made to the
// focus bot over to-device messages, in rooms the bot has joined.
//
// The Transport is the homeserver side. It serves the appservice API the
// homeserver pushes transactions to, logs the bot's own device in and runs
// /sync on it (for to-device messages, which not every homeserver pushes),
// joins rooms it is invited to, and sends to-device messages. What arrives
// goes to an Inbound, one call at a time, in order.
package matrix

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Inbound receives what the homeserver says, in order per room. The
// Transport calls its methods one at a time, so they should return
// quickly.
type Inbound interface {
	// RoomEvent is a state event from a room the bot is in: call
	// membership (m.call.member, org.matrix.msc3401.call.member) and
	// m.room.member, including the bot's own. It comes from transactions,
	// /sync, or the full state loaded when the bot joins.
	RoomEvent(ctx context.Context, evt *event.Event)
	// ToDevice is a to-device event for the bot's device, decrypted,
	// delivered once even when both transactions and /sync carry it.
	ToDevice(ctx context.Context, evt *event.Event)
	// RoomLeft says the bot left the room or was removed from it.
	RoomLeft(ctx context.Context, room id.RoomID)
}

// Crypto is the seam for Olm-encrypted to-device messages. The Transport
// works without one and then drops encrypted messages with a warning.
type Crypto interface {
	// DecryptToDevice returns the plaintext event an m.room.encrypted
	// to-device event carries.
	DecryptToDevice(ctx context.Context, evt *event.Event) (*event.Event, error)
	// EncryptToDevice returns what to send instead of (typ, content) to
	// the device: m.room.encrypted and its content when the device should
	// get it encrypted, or typ and content unchanged.
	EncryptToDevice(ctx context.Context, user id.UserID, device id.DeviceID, typ event.Type, content any) (event.Type, any, error)
	// KeyCounts reports the bot device's one-time key counts and unused
	// fallback key types, from /sync or a transaction.
	KeyCounts(ctx context.Context, otk mautrix.OTKCount, unusedFallback []id.KeyAlgorithm)
	// DeviceLists reports users whose devices changed or who no longer
	// share a room with the bot.
	DeviceLists(ctx context.Context, lists mautrix.DeviceLists)
}

// roomEventTypes are the state event types the Transport passes to
// Inbound.RoomEvent, room membership first.
func roomEventTypes() []event.Type {
	return []event.Type{
		event.StateMember,
		{Type: "m.call.member", Class: event.StateEventType},
		{Type: "org.matrix.msc3401.call.member", Class: event.StateEventType},
	}
}

func isRoomEventType(typ string) bool {
	return slices.ContainsFunc(roomEventTypes(), func(et event.Type) bool { return et.Type == typ })
}

// typeRoomEncrypted is the type of an Olm-encrypted to-device message.
const typeRoomEncrypted = "m.room.encrypted"

// homeserverCallWindow bounds one join or state load.
const homeserverCallWindow = 30 * time.Second

// Bounds of the in-memory dedupe sets.
const (
	maxSeenEvents   = 10_000
	maxSeenToDevice = 10_000
)

// inviteDedupeWindow is how long a handled invite to a room is not handled
// again: long enough for the second path to bring the same invite, short
// enough for a real new invite to work.
const inviteDedupeWindow = time.Minute

// readyWait is how long a transaction waits for Run to finish loading the
// joined rooms before it is answered 503 (the homeserver retries).
const readyWait = 20 * time.Second

// Transport connects the focus bot to its homeserver.
type Transport struct {
	cfg     Config
	log     zerolog.Logger
	user    id.UserID
	store   *Store
	http    *http.Client
	ownHTTP bool
	as      *mautrix.Client // as_token, acting as the bot (?user_id=)

	dev      atomic.Pointer[mautrix.Client] // the logged-in device; nil before login
	loggedIn chan struct{}                  // closed at the first login
	loginMu  sync.Mutex

	running atomic.Bool
	ready   chan struct{} // closed once Run has loaded the joined rooms
	done    chan struct{} // closed when Run returns
	runCtx  context.Context

	// mu serialises every call into Inbound and the state below.
	mu           sync.Mutex
	in           Inbound
	joined       map[id.RoomID]bool
	loaded       map[stateKey]loadedState // state loaded in full, until the stream passes it
	seenEvents   *recentSet
	seenToDevice *recentSet
	invites      map[id.RoomID]time.Time // when an invite to the room was last handled

	counters toDeviceCounters
}

// loadedState is the event a full state load delivered for one key.
type loadedState struct {
	id id.EventID
	ts int64 // origin_server_ts
}

// stateKey names one piece of room state.
type stateKey struct {
	room id.RoomID
	typ  string
	key  string
}

// NewTransport opens the data directory and prepares the homeserver
// clients. Nothing is sent or served until Run.
func NewTransport(cfg Config, log zerolog.Logger) (*Transport, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	store, err := OpenStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	t := &Transport{
		cfg:          cfg,
		log:          log,
		user:         cfg.UserID(),
		store:        store,
		http:         cfg.HTTPClient,
		loggedIn:     make(chan struct{}),
		ready:        make(chan struct{}),
		done:         make(chan struct{}),
		joined:       make(map[id.RoomID]bool),
		loaded:       make(map[stateKey]loadedState),
		seenEvents:   newRecentSet(maxSeenEvents),
		seenToDevice: newRecentSet(maxSeenToDevice),
		invites:      make(map[id.RoomID]time.Time),
	}
	if t.http == nil {
		t.http = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		t.ownHTTP = true
	}
	t.as, err = t.newClient(cfg.ASToken)
	if err != nil {
		store.Close()
		return nil, err
	}
	t.as.SetAppServiceUserID = true
	return t, nil
}

// newClient is a mautrix client for the homeserver with accessToken.
func (t *Transport) newClient(accessToken string) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(t.cfg.HomeserverURL, t.user, accessToken)
	if err != nil {
		return nil, fmt.Errorf("matrix: homeserver URL %q: %w", t.cfg.HomeserverURL, err)
	}
	cli.Client = t.http
	// mautrix logs every failed request itself; the Transport logs the
	// failures that matter, with a hint. Its own log is for tracing only.
	cli.Log = zerolog.Nop()
	if t.log.GetLevel() <= zerolog.TraceLevel && zerolog.GlobalLevel() <= zerolog.TraceLevel {
		cli.Log = t.log.With().Str("component", "mautrix").Logger()
	}
	cli.UserAgent = "focus-sfu " + mautrix.DefaultUserAgent
	return cli, nil
}

// UserID is the bot's user ID.
func (t *Transport) UserID() id.UserID { return t.user }

// DeviceID is the bot's device, the one clients send calls to.
func (t *Transport) DeviceID() id.DeviceID { return t.cfg.DeviceID }

// Config is the configuration the Transport runs with.
func (t *Transport) Config() Config { return t.cfg }

// Run loads the rooms the bot is in, logs its device in and runs /sync,
// delivering to in, until ctx ends. Transactions pushed to Handler are
// delivered to in from the moment the joined rooms are loaded. Failures
// of the homeserver are logged and retried. Run may be called once.
func (t *Transport) Run(ctx context.Context, in Inbound) error {
	if in == nil {
		return errors.New("matrix: Run: nil Inbound")
	}
	if !t.running.CompareAndSwap(false, true) {
		return errors.New("matrix: Run called twice")
	}
	defer close(t.done)
	t.mu.Lock()
	t.in = in
	t.runCtx = ctx
	t.mu.Unlock()

	t.log.Info().Str("user", string(t.user)).Str("device", string(t.cfg.DeviceID)).
		Str("homeserver", t.cfg.HomeserverURL).Msg("matrix: connecting to the homeserver")
	// The device is logged in before anything is delivered, so that an
	// Inbound that sends from inside a delivery never waits for a login
	// that would come after it.
	var cli *mautrix.Client
	if !t.retry(ctx, "register the bot account", t.register) ||
		!t.retry(ctx, "log in the bot device "+string(t.cfg.DeviceID), func(ctx context.Context) (err error) {
			cli, err = t.login(ctx)
			return err
		}) ||
		!t.retry(ctx, "list the rooms the bot is in", t.loadJoinedRooms) {
		return nil
	}
	close(t.ready)
	t.syncLoop(ctx, cli)
	return nil
}

// Close releases the data directory and idle connections. Call it after
// Run has returned.
func (t *Transport) Close() error {
	if t.ownHTTP {
		t.http.CloseIdleConnections()
	}
	return t.store.Close()
}

// SendToDevice sends one to-device message from the bot's device, so that
// its sender_device is the bot's device. It waits for the device to be
// logged in, within ctx. With a Crypto, the message is encrypted when the
// Crypto says so.
func (t *Transport) SendToDevice(ctx context.Context, user id.UserID, device id.DeviceID, typ event.Type, content any) error {
	err := t.sendToDevice(ctx, user, device, typ, content)
	if err != nil {
		t.counters.sendFailed.Add(1)
	} else {
		t.counters.sent.Add(1)
	}
	return err
}

func (t *Transport) sendToDevice(ctx context.Context, user id.UserID, device id.DeviceID, typ event.Type, content any) error {
	cli, err := t.deviceClient(ctx)
	if err != nil {
		return fmt.Errorf("matrix: send %s to %s/%s: %w", typ.Type, user, device, err)
	}
	typ.Class = event.ToDeviceEventType
	if t.cfg.Crypto != nil {
		typ, content, err = t.cfg.Crypto.EncryptToDevice(ctx, user, device, typ, content)
		if err != nil {
			return fmt.Errorf("matrix: send %s to %s/%s: encrypt: %w", typ.Type, user, device, err)
		}
		typ.Class = event.ToDeviceEventType
	}
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
		user: {device: {Parsed: content}},
	}}
	if _, err := cli.SendToDevice(ctx, typ, req); err != nil {
		return fmt.Errorf("matrix: send %s to %s/%s: %w", typ.Type, user, device, err)
	}
	return nil
}

// deviceClient waits for the bot's device to be logged in.
func (t *Transport) deviceClient(ctx context.Context) (*mautrix.Client, error) {
	select {
	case <-t.loggedIn:
		return t.dev.Load(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("the bot device is not logged in yet: %w", ctx.Err())
	}
}

// register makes sure the bot's account exists: a homeserver creates the
// appservice's sender by itself, but not the users in its namespace.
func (t *Transport) register(ctx context.Context) error {
	cli, err := t.newClient(t.cfg.ASToken) // acting as the sender, no ?user_id=
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, homeserverCallWindow)
	defer cancel()
	_, err = cli.MakeRequest(cctx, http.MethodPost, cli.BuildClientURL("v3", "register"), &mautrix.ReqRegister[any]{
		Username:     t.cfg.BotLocalpart,
		Type:         mautrix.AuthTypeAppservice,
		InhibitLogin: true,
	}, nil)
	var httpErr mautrix.HTTPError
	switch {
	case err == nil:
		t.log.Info().Str("user", string(t.user)).Msg("matrix: registered the bot account")
	case errors.Is(err, mautrix.MUserInUse):
	case errors.Is(err, mautrix.MUnknownToken), errors.Is(err, mautrix.MMissingToken):
		return err
	case errors.As(err, &httpErr) && httpErr.RespError != nil:
		// The bot may be the appservice's sender (a hand-written
		// registration), which some homeservers refuse to register.
		t.log.Warn().Err(err).Str("user", string(t.user)).Msg("matrix: cannot register the bot account; going on as if it exists")
	default:
		return err
	}
	return nil
}

// loadJoinedRooms asks which rooms the bot is in and loads their state.
func (t *Transport) loadJoinedRooms(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, homeserverCallWindow)
	resp, err := t.as.JoinedRooms(cctx)
	cancel()
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, room := range resp.JoinedRooms {
		if t.joined[room] {
			continue
		}
		if err := t.cfg.Policy.AllowRoom(room); err != nil {
			t.log.Warn().Str("room", string(room)).Err(err).Msg("matrix: the bot is in a room the policy does not allow; ignoring it")
			continue
		}
		t.joinedRoom(ctx, room)
	}
	t.log.Info().Int("rooms", len(t.joined)).Msg("matrix: loaded the rooms the bot is in")
	return nil
}

// roomEvent handles one room event from a transaction or /sync. Called
// with t.mu held.
func (t *Transport) roomEvent(ctx context.Context, evt *event.Event) {
	if evt.StateKey == nil || !isRoomEventType(evt.Type.Type) {
		return
	}
	if evt.ID != "" && !t.seenEvents.add(string(evt.ID)) {
		return // already delivered by the other path
	}
	room := evt.RoomID
	if evt.Type.Type == event.StateMember.Type && *evt.StateKey == string(t.user) {
		switch membershipOf(evt) {
		case event.MembershipInvite:
			t.invited(ctx, room, evt.Sender)
			return
		case event.MembershipJoin:
			if !t.joined[room] {
				if err := t.cfg.Policy.AllowRoom(room); err != nil {
					t.log.Warn().Str("room", string(room)).Err(err).Msg("matrix: the bot was joined to a room the policy does not allow; ignoring it")
					return
				}
				t.joinedRoom(ctx, room) // the loaded state has this event
				return
			}
		case event.MembershipLeave, event.MembershipBan:
			if t.joined[room] {
				t.deliverRoomEvent(ctx, evt)
				t.leftRoom(ctx, room, evt)
			}
			return
		}
	}
	if !t.joined[room] {
		return
	}
	k := stateKey{room, evt.Type.Type, *evt.StateKey}
	if l, ok := t.loaded[k]; ok {
		switch {
		case evt.ID == l.id:
			// The loaded event itself: delivered already.
			delete(t.loaded, k)
			return
		case evt.Timestamp < l.ts:
			// Older than the state loaded in full (a transaction queued
			// while the focus was down, say): it would undo newer state.
			t.log.Debug().Str("room", string(room)).Str("event", string(evt.ID)).Msg("matrix: skipping an event older than the loaded state")
			return
		}
		delete(t.loaded, k)
	}
	t.deliverRoomEvent(ctx, evt)
}

func (t *Transport) deliverRoomEvent(ctx context.Context, evt *event.Event) {
	evt.Type.Class = event.StateEventType
	if evt.Content.Parsed == nil {
		_ = evt.Content.ParseRaw(evt.Type) // unknown types stay raw
	}
	t.in.RoomEvent(ctx, evt)
}

// membershipOf reads the membership of an m.room.member event.
func membershipOf(evt *event.Event) event.Membership {
	m, _ := evt.Content.Raw["membership"].(string)
	return event.Membership(m)
}

// invited handles an invite of the bot to room by inviter: join if the
// policy allows, or reject. Called with t.mu held.
func (t *Transport) invited(ctx context.Context, room id.RoomID, inviter id.UserID) {
	now := time.Now()
	if t.joined[room] || now.Sub(t.invites[room]) < inviteDedupeWindow {
		return
	}
	for r, at := range t.invites {
		if now.Sub(at) >= inviteDedupeWindow {
			delete(t.invites, r)
		}
	}
	t.invites[room] = now
	log := t.log.With().Str("room", string(room)).Str("user", string(inviter)).Logger()
	if !t.cfg.AutoJoin {
		log.Info().Msg("matrix: invited to a room; not joining, matrix.auto_join is off")
		return
	}
	refusal := t.cfg.Policy.AllowUser(inviter)
	if refusal == nil {
		refusal = t.cfg.Policy.AllowRoom(room)
	}
	cctx, cancel := context.WithTimeout(ctx, homeserverCallWindow)
	defer cancel()
	if refusal != nil {
		log.Warn().Err(refusal).Msg("matrix: rejecting an invite the policy does not allow")
		if _, err := t.as.LeaveRoom(cctx, room, &mautrix.ReqLeave{Reason: "this focus does not serve " + refusal.Error()}); err != nil {
			log.Warn().Err(err).Msg("matrix: could not reject the invite")
		}
		return
	}
	req := &mautrix.ReqJoinRoom{}
	if _, server, err := inviter.Parse(); err == nil {
		req.Via = []string{server}
	}
	if _, err := t.as.JoinRoom(cctx, string(room), req); err != nil {
		if ctx.Err() != nil {
			// The focus is shutting down: not a failure of the join.
			log.Debug().Err(err).Msg("matrix: the join of an invited room was cut short by shutdown")
			return
		}
		log.Error().Err(err).Str("homeserver", t.cfg.HomeserverURL).Msg("matrix: could not join the room the bot was invited to")
		return
	}
	log.Info().Msg("matrix: joined a room on invite")
	t.joinedRoom(ctx, room)
}

// joinedRoom marks room joined and delivers its full state. Called with
// t.mu held.
func (t *Transport) joinedRoom(ctx context.Context, room id.RoomID) {
	t.joined[room] = true
	var state mautrix.RoomStateMap
	ok := t.retryN(ctx, 3, "load the state of room "+string(room), func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, homeserverCallWindow)
		defer cancel()
		var err error
		state, err = t.as.State(cctx, room)
		return err
	})
	if !ok {
		if ctx.Err() != nil {
			// Shutting down: the next start loads the state again.
			return
		}
		t.log.Error().Str("room", string(room)).Msg("matrix: serving the room without its state; calls there are refused until members update their membership")
		return
	}
	// Room membership first, so call membership finds its members known.
	for _, et := range roomEventTypes() {
		evts := state[et]
		keys := make([]string, 0, len(evts))
		for k := range evts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			evt := evts[k]
			if evt == nil || evt.StateKey == nil {
				continue
			}
			if evt.RoomID == "" {
				evt.RoomID = room
			}
			t.loaded[stateKey{room, et.Type, k}] = loadedState{evt.ID, evt.Timestamp}
			t.deliverRoomEvent(ctx, evt)
		}
	}
}

// leftRoom forgets room and tells Inbound. Called with t.mu held.
func (t *Transport) leftRoom(ctx context.Context, room id.RoomID, why *event.Event) {
	delete(t.joined, room)
	delete(t.invites, room) // a new invite is a new invite
	for k := range t.loaded {
		if k.room == room {
			delete(t.loaded, k)
		}
	}
	l := t.log.Info().Str("room", string(room))
	if why != nil {
		l = l.Str("user", string(why.Sender)).Str("membership", string(membershipOf(why)))
	}
	l.Msg("matrix: the bot left the room")
	t.in.RoomLeft(ctx, room)
}

// toDevice handles one to-device event for the bot's device from a
// transaction or /sync. Called with t.mu held.
func (t *Transport) toDevice(ctx context.Context, evt *event.Event) {
	evt.Type.Class = event.ToDeviceEventType
	if !t.seenToDevice.add(toDeviceKey(evt)) {
		t.log.Debug().Str("user", string(evt.Sender)).Str("type", evt.Type.Type).Msg("matrix: dropping a to-device message already delivered")
		return
	}
	if evt.Type.Type == typeRoomEncrypted {
		if t.cfg.Crypto == nil {
			t.counters.failed.Add(1)
			t.log.Warn().Str("user", string(evt.Sender)).Msg("matrix: dropping an encrypted to-device message: this focus has no encryption yet")
			return
		}
		plain, err := t.cfg.Crypto.DecryptToDevice(ctx, evt)
		if err != nil {
			t.counters.failed.Add(1)
			t.log.Warn().Str("user", string(evt.Sender)).Err(err).Msg("matrix: cannot decrypt a to-device message")
			return
		}
		plain.Type.Class = event.ToDeviceEventType
		if k := callKey(plain); k != "" && !t.seenToDevice.add(k) {
			return
		}
		evt = plain
	}
	t.in.ToDevice(ctx, evt)
}

// keyCounts passes key counts for the bot's device to Crypto.
func (t *Transport) keyCounts(ctx context.Context, otk *mautrix.OTKCount, fallback []id.KeyAlgorithm) {
	if t.cfg.Crypto != nil && (otk != nil || fallback != nil) {
		var c mautrix.OTKCount
		if otk != nil {
			c = *otk
		}
		c.UserID, c.DeviceID = t.user, t.cfg.DeviceID
		t.cfg.Crypto.KeyCounts(ctx, c, fallback)
	}
}

// retry runs f until it succeeds or ctx ends, waiting longer after each
// failure and logging each one. It reports whether f succeeded.
func (t *Transport) retry(ctx context.Context, what string, f func(context.Context) error) bool {
	return t.retryN(ctx, 0, what, f)
}

// retryN is retry with at most n attempts (0: no limit).
func (t *Transport) retryN(ctx context.Context, n int, what string, f func(context.Context) error) bool {
	lo, hi := t.cfg.backoff()
	wait := lo
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		t.logHomeserverError(what, err, wait)
		if n > 0 && attempt >= n {
			return false
		}
		if !sleep(ctx, wait) {
			return false
		}
		wait = min(2*wait, hi)
	}
}

// logHomeserverError logs a failed call to the homeserver with what it
// was for, the homeserver URL and a hint at the usual cause.
func (t *Transport) logHomeserverError(what string, err error, retryIn time.Duration) {
	l := t.log.Error().Err(err).Str("homeserver", t.cfg.HomeserverURL)
	if retryIn > 0 {
		l = l.Dur("retry_in", retryIn)
	}
	l.Msgf("matrix: cannot %s: %s", what, hint(err))
}

// hint names the usual cause of a homeserver error.
func hint(err error) string {
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.Is(err, mautrix.MUnknownToken), errors.Is(err, mautrix.MMissingToken):
		return "the homeserver does not accept the as_token; check that it has loaded the registration file and that matrix.registration (or matrix.as_token) is the same file"
	case errors.Is(err, mautrix.MExclusive), errors.Is(err, mautrix.MForbidden):
		return "the homeserver refused; check that the registration's namespace covers the bot and matrix.bot_localpart matches sender_localpart"
	case errors.Is(err, mautrix.MNotFound), errors.Is(err, mautrix.MUnrecognized):
		return "the homeserver does not know this; check matrix.homeserver_url points at the client-server API"
	case errors.As(err, &opErr), errors.As(err, &netErr):
		return "the homeserver is unreachable; check matrix.homeserver_url and that the homeserver is running"
	}
	return "unexpected error from the homeserver"
}

// sleep waits d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
