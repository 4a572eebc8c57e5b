package focus

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus/speaker"
)

// Options configure an SFU.
type Options struct {
	Log zerolog.Logger
	// MaxParticipantsPerConference and MaxParticipants bound the control
	// plane; zero means unlimited. They count participants connected
	// here, not the cascade's proxies and relays (with an Origin).
	MaxParticipantsPerConference int
	MaxParticipants              int
	// KeyframeInterval is the average spacing of keyframe requests sent
	// to one publisher layer: a budget that allows short bursts (three
	// requests, 100 ms apart) so that sporadic joiners start at once.
	// Zero means 500 ms.
	KeyframeInterval time.Duration
	// Now is the clock; nil means time.Now. Tests inject their own, and
	// with it the control loop does not run by itself: they call control.
	Now func() time.Time
	// PacketCache is the number of packets kept for retransmission per
	// published video layer (and remembered per video subscription).
	// Zero means 512: over a second of video at 400 packets a second.
	PacketCache int
	// Speakers tunes active-speaker detection.
	Speakers speaker.Options
	// MaxAudioForwarded forwards only the loudest N audio tracks of a
	// conference to each subscriber; zero forwards all.
	MaxAudioForwarded int
	// KeepUnwatched decides, for a video track that nobody watches,
	// whether its publisher keeps sending its lowest layer (true), so a
	// new subscriber starts at once, or is told to stop sending (false,
	// and when nil), which saves a mobile or bandwidth-limited
	// publisher's uplink. It is not asked about a cascade proxy's track
	// (its owner has an Origin): that one is pulled from its focus only
	// while someone here watches it.
	KeepUnwatched func(*UpTrack) bool
}

// SFU is the registry of conferences and the source of events.
type SFU struct {
	opts Options
	log  zerolog.Logger
	now  func() time.Time

	mu           sync.Mutex
	conferences  map[ConferenceID]*Conference
	aliases      map[ConferenceID]ConferenceID   // alias to canonical name
	aliasesOf    map[ConferenceID][]ConferenceID // canonical name to its aliases, sorted
	participants int
	closed       bool

	// statsMu orders Stats against retiring a track's counters into
	// retired (stats.go). It is taken before any other lock of the core.
	statsMu sync.Mutex
	retired Stats

	handlersMu sync.Mutex
	handlers   atomic.Pointer[[]*handler]

	stop     chan struct{}
	stopOnce sync.Once
	loop     sync.WaitGroup
	// probeBufs are owned by the control loop (probe).
	probeBufs struct {
		confs []*Conference
		parts []*Participant
	}
}

type handler struct{ fn func(Event) }

// New returns an SFU with no conferences.
func New(opts Options) *SFU {
	if opts.KeyframeInterval <= 0 {
		opts.KeyframeInterval = 500 * time.Millisecond
	}
	if opts.PacketCache <= 0 {
		opts.PacketCache = 512
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &SFU{
		opts:        opts,
		log:         opts.Log,
		now:         now,
		conferences: make(map[ConferenceID]*Conference),
		stop:        make(chan struct{}),
	}
	s.handlers.Store(&[]*handler{})
	if opts.Now == nil {
		s.loop.Add(1)
		go func() {
			defer s.loop.Done()
			s.run(s.stop)
		}()
	}
	return s
}

// OnEvent registers fn to receive every event, and returns a function that
// unregisters it.
func (s *SFU) OnEvent(fn func(Event)) (cancel func()) {
	h := &handler{fn: fn}
	s.handlersMu.Lock()
	old := *s.handlers.Load()
	next := make([]*handler, 0, len(old)+1)
	next = append(append(next, old...), h)
	s.handlers.Store(&next)
	s.handlersMu.Unlock()
	return func() {
		s.handlersMu.Lock()
		defer s.handlersMu.Unlock()
		old := *s.handlers.Load()
		next := make([]*handler, 0, len(old))
		for _, o := range old {
			if o != h {
				next = append(next, o)
			}
		}
		s.handlers.Store(&next)
	}
}

func (s *SFU) emit(events ...Event) {
	hs := *s.handlers.Load()
	for _, ev := range events {
		for _, h := range hs {
			h.fn(ev)
		}
	}
}

// Join adds a participant to the conference id (or to the conference id
// is an alias of), creating the conference when it does not exist yet.
func (s *SFU) Join(id ConferenceID, info ParticipantInfo) (*Participant, error) {
	if info.ID == "" {
		info.ID = ParticipantID("PA_" + randomID())
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	// The limits count participants connected here; the cascade's
	// proxies and relays (with an Origin) stand for other foci's.
	local := info.Origin == ""
	if local && s.opts.MaxParticipants > 0 && s.participants >= s.opts.MaxParticipants {
		s.mu.Unlock()
		return nil, ErrServerFull
	}
	id = s.resolveLocked(id)
	c := s.conferences[id]
	if c == nil {
		c = newConference(s, id)
		s.conferences[id] = c
	}
	c.mu.Lock()
	if max := s.opts.MaxParticipantsPerConference; local && max > 0 && c.localParticipantsLocked() >= max {
		empty := len(c.participants) == 0
		c.mu.Unlock()
		if empty {
			delete(s.conferences, id)
		}
		s.mu.Unlock()
		return nil, ErrConferenceFull
	}
	p := newParticipant(c, info)
	c.participants[p.info.ID] = p
	c.mu.Unlock()
	if local {
		s.participants++
	}
	s.mu.Unlock()

	p.log.Debug().Msg("participant joined")
	s.emit(ParticipantJoined{Conference: c, Participant: p})
	return p, nil
}

// leave removes p from its conference; the conference goes when empty.
func (s *SFU) leave(p *Participant) {
	c := p.conf
	s.mu.Lock()
	c.mu.Lock()
	if _, ok := c.participants[p.info.ID]; ok {
		delete(c.participants, p.info.ID)
		if p.info.Origin == "" {
			s.participants--
		}
	}
	if len(c.participants) == 0 && s.conferences[c.id] == c {
		delete(s.conferences, c.id)
	}
	c.mu.Unlock()
	s.mu.Unlock()
}

// Conference returns the conference id (or the one id is an alias of),
// or nil.
func (s *SFU) Conference(id ConferenceID) *Conference {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conferences[s.resolveLocked(id)]
}

// Conferences returns every conference.
func (s *SFU) Conferences() []*Conference {
	return s.appendConferences(nil)
}

// appendConferences appends every conference to out, in no order.
func (s *SFU) appendConferences(out []*Conference) []*Conference {
	s.mu.Lock()
	defer s.mu.Unlock()
	out = slices.Grow(out, len(s.conferences))
	for _, c := range s.conferences {
		out = append(out, c)
	}
	return out
}

// Participants returns how many participants are connected here: the
// cascade's proxies and relays (with an Origin) are not counted.
func (s *SFU) Participants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.participants
}

// Close makes every participant leave and refuses new ones.
func (s *SFU) Close() {
	s.mu.Lock()
	s.closed = true
	var all []*Participant
	for _, c := range s.conferences {
		all = append(all, c.Participants()...)
	}
	s.mu.Unlock()
	for _, p := range all {
		p.Leave()
	}
	s.stopOnce.Do(func() { close(s.stop) })
	s.loop.Wait()
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
