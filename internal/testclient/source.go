package testclient

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// VideoPacing shapes the synthetic VP8 stream of SendVP8.
type VideoPacing struct {
	// PPS is the packet rate, FPS the frame rate: frames have
	// ceil(PPS/FPS) packets, spaced so the packet rate is PPS.
	PPS, FPS int
	// PacketSize is the payload size of each packet.
	PacketSize int
	// KeyframeInterval spaces the keyframes sent unasked.
	KeyframeInterval time.Duration
}

// SendVP8 writes synthetic VP8 frames through write until stop is closed.
// A frame is a keyframe every KeyframeInterval, and at once when wanted
// is set (SendVP8 clears it); onKeyframe, if not nil, is told of each,
// with the counter of its first packet and whether it was asked for.
// Every payload ends in a trailer (Marker) a receiver can check.
func SendVP8(stop <-chan struct{}, o VideoPacing, wanted *atomic.Bool, onKeyframe func(at time.Time, counter uint32, requested bool), write func(*rtp.Packet)) {
	perFrame := max(1, (o.PPS+o.FPS/2)/o.FPS)
	interval := time.Duration(perFrame) * time.Second / time.Duration(o.PPS)
	tsStep := uint32(interval * 90000 / time.Second)
	session := rand.Uint32()
	pkt := &rtp.Packet{Header: rtp.Header{
		Version:        2,
		PayloadType:    ptVP8,
		SequenceNumber: uint16(rand.Uint32()),
		Timestamp:      rand.Uint32(),
	}}
	var counter uint32
	var buf []byte
	var lastKey time.Time
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		requested := wanted.Swap(false)
		key := requested || now.Sub(lastKey) >= o.KeyframeInterval
		if key {
			lastKey = now
			if onKeyframe != nil {
				onKeyframe(now, counter, requested)
			}
		}
		for i := range perFrame {
			buf = AppendVP8(buf[:0], i == 0, key, o.PacketSize, Marker{Session: session, Counter: counter, Sent: now})
			counter++
			pkt.Marker = i == perFrame-1
			pkt.Payload = buf
			write(pkt)
			pkt.SequenceNumber++
		}
		pkt.Timestamp += tsStep
	}
}

// SendOpus writes one synthetic 20 ms Opus packet of size bytes every
// 20 ms through write until stop is closed.
func SendOpus(stop <-chan struct{}, size int, write func(*rtp.Packet)) {
	session := rand.Uint32()
	pkt := &rtp.Packet{Header: rtp.Header{
		Version:        2,
		PayloadType:    ptOpus,
		SequenceNumber: uint16(rand.Uint32()),
		Timestamp:      rand.Uint32(),
		Marker:         true, // first packet of a talk spurt
	}}
	var counter uint32
	var buf []byte
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		buf = AppendOpus(buf[:0], size, Marker{Session: session, Counter: counter, Sent: time.Now()})
		counter++
		pkt.Payload = buf
		write(pkt)
		pkt.Marker = false
		pkt.SequenceNumber++
		pkt.Timestamp += 960
	}
}
