package livekit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/livekit/protocol/livekit"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The signalling connection: one websocket carrying SignalRequest frames
// from the client and SignalResponse frames to it, protobuf in binary
// frames or protojson in text frames. The server answers in the encoding
// the client last used, binary until it has sent anything.

const (
	// maxFrameSize bounds one signalling frame; an offer with simulcast
	// and every codec is some 20 kB.
	maxFrameSize = 1 << 20
	// sendQueue is how many responses may wait for a slow client before
	// its connection is closed.
	sendQueue = 1024
	// writeTimeout bounds the write of one frame.
	writeTimeout = 10 * time.Second
	// keepAliveInterval spaces websocket pings; a client that does not
	// answer one within keepAliveTimeout is gone. This is below the
	// protocol's own ping, which only the client starts.
	keepAliveInterval = 10 * time.Second
	keepAliveTimeout  = 15 * time.Second

	// A client may send requestBurst requests at once and requestRate a
	// second after that; more is a flood and closes the connection. Join
	// and resume send a few dozen (candidates, offer, add_track, settings).
	requestRate  = 50
	requestBurst = 200
)

// encoding is how a client encodes its frames.
type encoding uint32

const (
	encBinary encoding = iota // protobuf in binary frames
	encJSON                   // protojson in text frames
)

// Errors of decodeSignal.
var (
	errMalformed   = errors.New("malformed signal request")
	errFrameType   = errors.New("unexpected websocket frame type")
	errFrameTooBig = errors.New("signal request too large")
)

var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

// decodeSignal decodes one websocket frame. A frame that parses but
// carries no message this version knows comes back with a nil Message;
// callers ignore it, as newer clients may send newer requests.
func decodeSignal(typ websocket.MessageType, data []byte) (*livekit.SignalRequest, encoding, error) {
	if len(data) > maxFrameSize {
		return nil, 0, errFrameTooBig
	}
	req := &livekit.SignalRequest{}
	switch typ {
	case websocket.MessageBinary:
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, encBinary, fmt.Errorf("%w: %v", errMalformed, err)
		}
		return req, encBinary, nil
	case websocket.MessageText:
		if err := jsonIn.Unmarshal(data, req); err != nil {
			return nil, encJSON, fmt.Errorf("%w: %v", errMalformed, err)
		}
		return req, encJSON, nil
	}
	return nil, 0, errFrameType
}

// encodeSignal encodes a response for a client using enc.
func encodeSignal(enc encoding, res *livekit.SignalResponse) (websocket.MessageType, []byte, error) {
	if enc == encJSON {
		b, err := protojson.Marshal(res)
		return websocket.MessageText, b, err
	}
	b, err := proto.Marshal(res)
	return websocket.MessageBinary, b, err
}

// requestName names a request's message for logs.
func requestName(req *livekit.SignalRequest) string {
	if req == nil || req.Message == nil {
		return "unknown"
	}
	return fmt.Sprintf("%T", req.Message)[len("*livekit.SignalRequest_"):]
}

// outFrame is a response waiting to be written, or the instruction to
// close once everything before it is written.
type outFrame struct {
	res    *livekit.SignalResponse
	close  bool
	code   websocket.StatusCode
	reason string
}

// signalConn is one websocket of a participant. Sending never blocks:
// responses queue for a writer goroutine, and a client too slow to take
// them is disconnected.
type signalConn struct {
	ws  *websocket.Conn
	log zerolog.Logger
	enc atomic.Uint32

	out     chan outFrame
	done    chan struct{} // closed when the writer has finished
	ctx     context.Context
	cancel  context.CancelFunc
	closing atomic.Bool

	// read side, owned by the reading goroutine
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newSignalConn(ws *websocket.Conn, log zerolog.Logger) *signalConn {
	ws.SetReadLimit(maxFrameSize)
	ctx, cancel := context.WithCancel(context.Background())
	c := &signalConn{
		ws:     ws,
		log:    log,
		out:    make(chan outFrame, sendQueue),
		done:   make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
		tokens: requestBurst,
		now:    time.Now,
	}
	c.last = c.now()
	return c
}

// start runs the writer and the keep-alive; wg counts them.
func (c *signalConn) start(wg *sync.WaitGroup) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.writeLoop()
	}()
	go func() {
		defer wg.Done()
		c.keepAlive()
	}()
}

// send queues a response. It reports false when the connection is
// closing or the client is not keeping up (which closes it).
func (c *signalConn) send(res *livekit.SignalResponse) bool {
	if c.closing.Load() {
		return false
	}
	select {
	case c.out <- outFrame{res: res}:
		return true
	default:
		c.log.Warn().Int("queued", sendQueue).Msg("client does not read its signalling; closing the connection")
		c.abort()
		return false
	}
}

// close writes what is queued, optionally res, then closes the websocket
// with code and reason.
func (c *signalConn) close(res *livekit.SignalResponse, code websocket.StatusCode, reason string) {
	if c.closing.Swap(true) {
		return
	}
	if res != nil {
		select {
		case c.out <- outFrame{res: res}:
		default:
		}
	}
	select {
	case c.out <- outFrame{close: true, code: code, reason: reason}:
	default:
		c.abort()
	}
}

// abort drops the connection at once.
func (c *signalConn) abort() {
	c.closing.Store(true)
	c.cancel()
	_ = c.ws.CloseNow()
}

// closed is closed when the connection has finished writing.
func (c *signalConn) closed() <-chan struct{} { return c.done }

func (c *signalConn) writeLoop() {
	defer close(c.done)
	defer c.cancel()
	for {
		select {
		case <-c.ctx.Done():
			_ = c.ws.CloseNow()
			return
		case f := <-c.out:
			if f.close {
				// Close waits for the client's close frame, up to 5 s.
				_ = c.ws.Close(f.code, f.reason)
				return
			}
			typ, b, err := encodeSignal(encoding(c.enc.Load()), f.res)
			if err != nil {
				c.log.Error().Err(err).Msg("encode signal response")
				continue
			}
			ctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
			err = c.ws.Write(ctx, typ, b)
			cancel()
			if err != nil {
				c.log.Debug().Err(err).Msg("write signal response")
				c.closing.Store(true)
				_ = c.ws.CloseNow()
				return
			}
		}
	}
}

func (c *signalConn) keepAlive() {
	t := time.NewTicker(keepAliveInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(c.ctx, keepAliveTimeout)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil && c.ctx.Err() == nil {
				c.log.Info().Err(err).Msg("client stopped answering websocket pings")
				c.abort()
				return
			}
		}
	}
}

// errFlood is returned by read for a client over its request rate.
var errFlood = errors.New("too many signal requests")

// read returns the next request. It must be called from one goroutine.
// Errors end the connection: errMalformed and errFlood are the client's
// fault, anything else is the connection going away.
func (c *signalConn) read() (*livekit.SignalRequest, error) {
	typ, data, err := c.ws.Read(c.ctx)
	if err != nil {
		return nil, err
	}
	if !c.allow() {
		return nil, errFlood
	}
	req, enc, err := decodeSignal(typ, data)
	if err != nil {
		return nil, err
	}
	c.enc.Store(uint32(enc))
	return req, nil
}

// allow takes a token from the request bucket.
func (c *signalConn) allow() bool {
	now := c.now()
	c.tokens += now.Sub(c.last).Seconds() * requestRate
	c.last = now
	if c.tokens > requestBurst {
		c.tokens = requestBurst
	}
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}
