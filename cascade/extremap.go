package cascade

import (
	"encoding/binary"

	"github.com/pion/webrtc/v4"

	"github.com/focus-sfu/focus/focus"
)

// extRemap renumbers the RTP header extensions of a trunk track, in
// place, from the IDs the trunk negotiated to those its proxy track was
// published with. They differ when the exporter's engine numbers
// extensions otherwise than this focus's (rtc registers them in map
// order, so each process may number them differently). An extension the
// proxy track does not know gets an ID it does not use, so the core
// drops it rather than mistake it for another.
type extRemap struct {
	to    [256]uint8
	spare uint8 // the ID of unknown extensions
}

// newExtRemap returns the renumbering from negotiated to want, or nil
// when none is needed.
func newExtRemap(negotiated []webrtc.RTPHeaderExtensionParameter, want []focus.HeaderExtension) *extRemap {
	byURI := make(map[string]uint8, len(want))
	used := make(map[uint8]bool, len(want))
	for _, e := range want {
		byURI[e.URI] = e.ID
		used[e.ID] = true
	}
	// The ID for unknown extensions: one the proxy track does not use,
	// valid in both header formats (1-14).
	var spare uint8
	for id := uint8(14); id >= 1; id-- {
		if !used[id] {
			spare = id
			break
		}
	}
	r := &extRemap{spare: spare}
	identity := true
	for i := range r.to {
		r.to[i] = uint8(i)
	}
	for _, e := range negotiated {
		if e.ID <= 0 || e.ID > 255 {
			continue
		}
		to, ok := byURI[e.URI]
		if !ok {
			to = spare
		}
		if to != uint8(e.ID) {
			r.to[e.ID] = to
			identity = false
		}
	}
	if identity {
		return nil
	}
	return r
}

// apply renumbers the extensions of one RTP packet in place. A packet
// too short for what its header says is left alone: the core refuses
// it.
func (r *extRemap) apply(pkt []byte) {
	if len(pkt) < 12 || pkt[0]&0x10 == 0 {
		return
	}
	off := 12 + 4*int(pkt[0]&0x0f)
	if len(pkt) < off+4 {
		return
	}
	profile := binary.BigEndian.Uint16(pkt[off:])
	end := off + 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:]))
	if len(pkt) < end {
		return
	}
	i := off + 4
	switch {
	case profile == 0xBEDE: // RFC 8285 one-byte header
		for i < end {
			id := pkt[i] >> 4
			if id == 0 { // padding
				i++
				continue
			}
			if id == 15 { // reserved: stop
				return
			}
			n := int(pkt[i]&0x0f) + 1
			to := r.to[id]
			if to == 0 || to > 14 {
				to = r.spare // not expressible in this format
			}
			pkt[i] = to<<4 | pkt[i]&0x0f
			i += 1 + n
		}
	case profile&0xfff0 == 0x1000: // RFC 8285 two-byte header
		for i+1 < end {
			id := pkt[i]
			if id == 0 { // padding
				i++
				continue
			}
			n := int(pkt[i+1])
			if to := r.to[id]; to != 0 {
				pkt[i] = to
			}
			i += 2 + n
		}
	}
}
