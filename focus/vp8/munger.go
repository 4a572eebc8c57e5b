package vp8

// Munger keeps one subscriber's picture IDs, TL0PICIDX and KEYIDX continuous
// across source switches and temporal-layer drops, so that its decoder sees
// one unbroken stream: a jump in picture ID reads as lost frames, and a jump
// in TL0PICIDX as a lost base-layer frame, either of which makes a receiver
// ask for a keyframe.
//
// Each field maps as out = in + offset, modulo its width (7 or 15 bits for
// the picture ID, as the input packet uses; 8 bits for TL0PICIDX; 5 for
// KEYIDX). The first source maps with offset 0. SwitchSource sets the
// offsets so that the new source continues one after the last values sent;
// dropping a picture lowers the picture ID offset by one, once per picture.
//
// Limitation: a late (reordered) packet of a picture older than the newest
// one seen maps with the current offset; if a picture was dropped or the
// source switched in between, its picture ID comes out off by that much.
// The receiver then sees it as a stray packet of another frame, which costs
// at worst that frame.
//
// A Munger is not safe for concurrent use; it belongs to one subscriber's
// forwarding path.
type Munger struct {
	picOff uint16 // applied modulo the packet's picture ID width
	tl0Off uint8
	keyOff uint8 // modulo 32

	// Set by SwitchSource for a field the switching packet lacks: its
	// offset is taken from the first later packet that carries it.
	picPending, tl0Pending, keyPending bool

	// The newest values sent: where the next source continues.
	lastPic, lastTL0, lastKey uint16
	havePic, haveTL0, haveKey bool

	// The newest picture of the current source and whether it is being
	// dropped: every packet of a picture gets the decision of its first
	// packet, so that a maxTID change in the middle of a frame neither
	// forwards half a frame nor counts the picture twice.
	curPic  uint16
	haveCur bool
	curDrop bool
}

// SwitchSource starts a new source. Call it with the first packet to be
// forwarded from the new source (normally the first packet of a keyframe),
// then Rewrite that packet as usual: it comes out one past the last picture
// ID, TL0PICIDX and KEYIDX sent. Before anything was sent, the new source
// maps unchanged.
func (m *Munger) SwitchSource(in *Descriptor) {
	m.haveCur = false
	m.picPending, m.tl0Pending, m.keyPending = true, true, true
	m.sync(in)
}

// sync sets the offset of each pending field that in carries.
func (m *Munger) sync(in *Descriptor) {
	if m.picPending && in.HasPictureID {
		m.picPending = false
		m.picOff = 0
		if m.havePic {
			m.picOff = m.lastPic + 1 - in.PictureID
		}
	}
	if m.tl0Pending && in.HasTL0PICIDX {
		m.tl0Pending = false
		m.tl0Off = 0
		if m.haveTL0 {
			m.tl0Off = uint8(m.lastTL0) + 1 - in.TL0PICIDX
		}
	}
	if m.keyPending && in.HasKEYIDX {
		m.keyPending = false
		m.keyOff = 0
		if m.haveKey {
			m.keyOff = (uint8(m.lastKey) + 1 - in.KEYIDX) & 0x1f
		}
	}
}

// Rewrite maps in to out (which may be in itself). drop=true: the packet's
// temporal layer is above maxTID (maxTID<0 means keep all), or it belongs
// to a picture whose first packet was; the caller drops it (and its
// sequence number). TL0 frames and frames without a TID are never dropped.
// changed=false means out == in, the caller may forward the payload
// untouched; otherwise it writes out over the descriptor with MarshalTo
// (the size does not change).
func (m *Munger) Rewrite(in *Descriptor, maxTID int, out *Descriptor) (drop, changed bool) {
	m.sync(in)
	d := *in // in and out may alias
	drop = d.HasTID && maxTID >= 0 && int(d.TID) > maxTID

	newPic := false
	if d.HasPictureID {
		mask := pictureIDMask(d.LongPictureID)
		switch {
		case !m.haveCur || newer(d.PictureID, m.curPic, mask):
			newPic = true
			m.curPic, m.haveCur, m.curDrop = d.PictureID, true, drop
			if drop {
				// The next picture takes this one's output ID.
				m.picOff--
			}
		case d.PictureID == m.curPic:
			drop = m.curDrop
		}
	}
	*out = d
	if drop {
		return true, false
	}

	if d.HasPictureID {
		out.PictureID = (d.PictureID + m.picOff) & pictureIDMask(d.LongPictureID)
		if newPic {
			m.lastPic, m.havePic = out.PictureID, true
		}
	}
	if d.HasTL0PICIDX {
		out.TL0PICIDX = d.TL0PICIDX + m.tl0Off
		if v := uint16(out.TL0PICIDX); !m.haveTL0 || newer(v, m.lastTL0, 0xff) {
			m.lastTL0, m.haveTL0 = v, true
		}
	}
	if d.HasKEYIDX {
		out.KEYIDX = (d.KEYIDX + m.keyOff) & 0x1f
		if v := uint16(out.KEYIDX); !m.haveKey || newer(v, m.lastKey, 0x1f) {
			m.lastKey, m.haveKey = v, true
		}
	}
	changed = out.PictureID != d.PictureID || out.TL0PICIDX != d.TL0PICIDX || out.KEYIDX != d.KEYIDX
	return false, changed
}

// newer reports whether a comes after b in a sequence space of mask+1
// values (a power of two): less than half of it ahead.
func newer(a, b, mask uint16) bool {
	diff := (a - b) & mask
	return diff != 0 && diff <= mask/2
}
