package cascade

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/focus"
	"github.com/focus-sfu/focus/mesh"
	"github.com/focus-sfu/focus/rtc"
)

// Options configure a Cascade.
type Options struct {
	SFU       *focus.SFU
	Engine    *rtc.Engine
	Directory mesh.Directory
	// Holdings receives this focus's holdings whenever they change
	// ((*mesh.Node).SetHoldings). Nil keeps them to the cascade.
	Holdings func([]mesh.Conference)
	// Secret is the HMAC key of trunk signalling, shared by every focus
	// of the mesh: at least 16 bytes.
	Secret []byte
	Log    zerolog.Logger
	// Mirror reports whether a remote conference (by its names) gets
	// proxies here even while no local participant is in it. Front-ends
	// whose clients look for tracks before they join (a WHEP viewer)
	// need it for their namespace; nil mirrors none, so a conference is
	// only proxied into a focus that has a local participant in it.
	Mirror func(names []string) bool
	// PullEngine makes the trunks this focus dials (pulls over). It must
	// not share Engine's media port: two foci that pull from each other
	// would otherwise run two connections between the same two ports,
	// which one port's ICE demultiplexer cannot tell apart (packets of
	// one reach the other and fail SRTP). Nil makes one on Engine's IP
	// with a free port, closed by Close. The exporter answers on Engine.
	PullEngine *rtc.Engine
	// IdleTimeout is how long a pulling trunk that carries no track stays
	// open for the next pull; zero means 30 s. A trunk to a focus that
	// has no track here at all closes after the pull grace (2 s) instead.
	IdleTimeout time.Duration
	// ClientTLS, when set, is the TLS configuration of the trunk requests
	// this focus makes: with mutual TLS between foci, it presents this
	// focus's certificate and trusts only the mesh's CA.
	ClientTLS *tls.Config
}

// Cascade relays tracks between this focus and the others of the mesh.
type Cascade struct {
	opts   Options
	sfu    *focus.SFU
	dir    mesh.Directory
	log    zerolog.Logger
	self   string
	verify *verifier
	client *http.Client
	timing timing
	// dialer makes the pulling trunks' connections; ownDialer says the
	// cascade made it (and closes it).
	dialer    *rtc.Engine
	ownDialer bool

	q        *queue
	stop     chan struct{}
	loopDone chan struct{}
	trunks   sync.WaitGroup // trunk loops
	unsubs   []func()

	mu     sync.Mutex
	closed bool
	out    map[string]*trunk // pulling trunks, by exporter node
	in     map[string]*trunk // exporting trunks, by puller node

	ctl control // owned by the control loop

	extOnce sync.Once
	exts    map[focus.Kind][]focus.HeaderExtension

	// heldBack lists the foci whose proxies wait for a new trunk, for
	// Status; written by the control loop.
	heldBack atomic.Pointer[[]string]

	counters counters
}

// timing holds the cascade's intervals; tests shorten some.
type timing struct {
	ping    time.Duration // heartbeat interval
	dead    time.Duration // silence after which a trunk is dead
	connect time.Duration // how long a new trunk may take to open
	answer  time.Duration // how long the puller may take to answer an offer
	grace   time.Duration // demand gone for this long ends a pull
	idle    time.Duration // a pulling trunk without pulls closes after this (grace when nothing could be pulled)
	retry   time.Duration // a refused pull is asked again after this
	tick    time.Duration // the control loop's clock
	resync  time.Duration // full reconcile and holdings check, besides events
	settle  time.Duration // holdings wait this long for more events
	backoff [2]time.Duration
}

func defaultTiming() timing {
	return timing{
		ping:    time.Second,
		dead:    3 * time.Second,
		connect: 10 * time.Second,
		answer:  10 * time.Second,
		grace:   2 * time.Second,
		idle:    30 * time.Second,
		retry:   2 * time.Second,
		tick:    100 * time.Millisecond,
		resync:  time.Second,
		settle:  100 * time.Millisecond,
		backoff: [2]time.Duration{250 * time.Millisecond, 5 * time.Second},
	}
}

// counters are the cascade's monotonic counters (see Stats).
type counters struct {
	trunksOpened      atomic.Uint64
	heartbeatFailures atomic.Uint64
	refused           atomic.Uint64
	// Traffic of trunks that ended, guarded by the cascade's mu; live
	// trunks are read when asked.
	retired trafficTotals
}

// New returns a cascade serving opts.SFU's conferences to the mesh of
// opts.Directory, and starts its control loop. Mount Handler where the
// other foci reach this one (the TrunkURL of its mesh identity).
func New(opts Options) (*Cascade, error) {
	return newCascade(opts, defaultTiming())
}

func newCascade(opts Options, tm timing) (*Cascade, error) {
	switch {
	case opts.SFU == nil || opts.Engine == nil || opts.Directory == nil:
		return nil, errors.New("cascade: SFU, Engine and Directory are required")
	case len(opts.Secret) < minSecret:
		return nil, fmt.Errorf("cascade: the trunk secret has %d bytes; it needs at least %d", len(opts.Secret), minSecret)
	}
	if opts.IdleTimeout > 0 {
		tm.idle = opts.IdleTimeout
	}
	self := opts.Directory.Self()
	if self == "" {
		return nil, errors.New("cascade: the directory names no local node")
	}
	c := &Cascade{
		opts:   opts,
		sfu:    opts.SFU,
		dir:    opts.Directory,
		log:    opts.Log.With().Str("component", "cascade").Str("node", self).Logger(),
		self:   self,
		verify: newVerifier(append([]byte(nil), opts.Secret...), time.Now),
		client: &http.Client{
			Timeout: tm.connect,
			// One request per trunk: no idle connections to outlive it.
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: http.ProxyFromEnvironment, TLSClientConfig: opts.ClientTLS},
		},
		timing:   tm,
		q:        newQueue(),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		out:      make(map[string]*trunk),
		in:       make(map[string]*trunk),
	}
	c.dialer = opts.PullEngine
	if c.dialer == nil {
		d, err := newDialer(opts.Engine, c.log)
		if err != nil {
			return nil, err
		}
		c.dialer, c.ownDialer = d, true
	}
	c.ctl.init()
	c.unsubs = append(c.unsubs,
		opts.SFU.OnEvent(c.onEvent),
		opts.Directory.OnChange(func() { c.q.push(c.directoryChanged) }),
	)
	go c.run()
	return c, nil
}

// Close ends every trunk, removes every proxy and hidden participant,
// withdraws this focus's holdings and stops the control loop. It returns
// within a few seconds however the peers behave.
func (c *Cascade) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	for _, u := range c.unsubs {
		u()
	}
	close(c.stop)
	<-c.loopDone // the loop removes the proxies on its way out

	c.mu.Lock()
	var all []*trunk
	for _, t := range c.out {
		all = append(all, t)
	}
	for _, t := range c.in {
		all = append(all, t)
	}
	c.mu.Unlock()
	for _, t := range all {
		t.close("focus shutting down", closedByUs)
	}
	done := make(chan struct{})
	go func() { c.trunks.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		c.log.Warn().Msg("trunks did not end in time; leaving them")
	}
	if c.ownDialer {
		if err := c.dialer.Close(); err != nil {
			c.log.Debug().Err(err).Msg("close the trunk dialer's port")
		}
	}
	if c.opts.Holdings != nil {
		c.opts.Holdings(nil)
	}
	c.log.Info().Msg("cascade closed")
}

// newDialer makes the engine of the pulling trunks: on the media
// engine's IP, any free port, loopback candidates included (harmless
// when the peer is elsewhere: its checks to them fail). It needs no
// public IPs: the exporter learns its address from its checks.
func newDialer(media *rtc.Engine, log zerolog.Logger) (*rtc.Engine, error) {
	bind := ""
	if a := media.UDPAddr(); a != nil && !a.IP.IsUnspecified() {
		bind = a.IP.String()
	}
	d, err := rtc.New(rtc.Config{BindAddress: bind, IncludeLoopback: true}, log.With().Str("engine", "trunk dialer").Logger())
	if err != nil {
		return nil, fmt.Errorf("cascade: the trunk dialer's port: %w", err)
	}
	return d, nil
}

// closeWait bounds how long Close waits for the trunks to end.
const closeWait = 5 * time.Second

// isClosed reports whether Close has begun.
func (c *Cascade) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// pullTrunk returns the trunk this focus pulls from node over, or nil.
func (c *Cascade) pullTrunk(node string) *trunk {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out[node]
}

// exportTrunks returns the trunks this focus exports on.
func (c *Cascade) exportTrunks() []*trunk {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*trunk, 0, len(c.in))
	for _, t := range c.in {
		out = append(out, t)
	}
	return out
}

// startTrunk registers t and runs its loop; setup, when not nil, runs
// first on the loop (the puller's dial). It replaces the trunk of the
// same peer and direction, which it closes. It fails once Close began.
func (c *Cascade) startTrunk(t *trunk, setup func() error) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("cascade: closed")
	}
	reg := c.in
	if t.dir == pulling {
		reg = c.out
	}
	old := reg[t.peer]
	reg[t.peer] = t
	c.trunks.Add(1)
	c.mu.Unlock()
	if old != nil {
		old.close("replaced by a new trunk from the same focus", closedByPeer)
	}
	go func() {
		defer c.trunks.Done()
		t.run(setup)
	}()
	return nil
}

// trunkEnded unregisters t, once its loop has released everything, and
// keeps its traffic in the totals.
func (c *Cascade) trunkEnded(t *trunk) {
	in, out := t.traffic()
	c.mu.Lock()
	reg := c.in
	if t.dir == pulling {
		reg = c.out
	}
	if reg[t.peer] == t {
		delete(reg, t.peer)
	}
	c.counters.retired.add(in, out)
	c.mu.Unlock()
	if t.dir == pulling {
		c.q.push(func() { c.ctl.trunkEnded(c, t) })
	}
}
