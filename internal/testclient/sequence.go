package testclient

// seqWindow is how far back, in packets, the tracker remembers which
// sequence numbers arrived. A packet older than that is counted as late but
// cannot be told from a duplicate.
const seqWindow = 1024

// SeqStats counts what a receiver saw of one RTP sequence-number space.
type SeqStats struct {
	// Packets is every packet offered to the tracker.
	Packets int
	// Gaps counts jumps forward by more than one: each is one event,
	// however many numbers it skipped.
	Gaps int
	// Missing is how many numbers were skipped and have not arrived since.
	Missing int
	// Reordered counts packets that arrived after a higher number, filling
	// a hole (a NACK retransmission on a lossy path also lands here).
	Reordered int
	// Duplicates counts numbers that arrived more than once.
	Duplicates int
	// Late counts packets too old for the window: reordered or duplicate.
	Late int
	// Highest is the highest sequence number seen, extended past 16 bits
	// (the first packet's number plus 65536 per wrap).
	Highest int64
}

// SeqTracker follows one RTP sequence-number space, wraparound included.
// The zero value is ready. It is not safe for concurrent use.
type SeqTracker struct {
	stats   SeqStats
	started bool
	seen    [seqWindow / 64]uint64 // bit per extended number mod seqWindow
}

// Push records one packet and reports whether it advanced the highest
// sequence number (that is, whether it was in order).
func (t *SeqTracker) Push(seq uint16) (inOrder bool) {
	t.stats.Packets++
	if !t.started {
		t.started = true
		t.stats.Highest = int64(seq)
		t.mark(t.stats.Highest)
		return true
	}
	hi := t.stats.Highest
	ext := hi + int64(int16(seq-uint16(hi)))
	switch {
	case ext > hi:
		if skipped := ext - hi - 1; skipped > 0 {
			t.stats.Gaps++
			t.stats.Missing += int(skipped)
			// Forget the window slots the skipped numbers reuse.
			for n := hi + 1; n < ext && n < hi+1+seqWindow; n++ {
				t.unmark(n)
			}
		}
		t.stats.Highest = ext
		t.mark(ext)
		return true
	case hi-ext >= seqWindow:
		t.stats.Late++
	case t.marked(ext):
		t.stats.Duplicates++
	default:
		t.stats.Reordered++
		t.stats.Missing--
		t.mark(ext)
	}
	return false
}

// Stats returns the counts so far.
func (t *SeqTracker) Stats() SeqStats { return t.stats }

func (t *SeqTracker) slot(n int64) (int, uint64) {
	i := int(uint64(n) % seqWindow)
	return i / 64, 1 << (i % 64)
}

func (t *SeqTracker) mark(n int64) {
	w, b := t.slot(n)
	t.seen[w] |= b
}

func (t *SeqTracker) unmark(n int64) {
	w, b := t.slot(n)
	t.seen[w] &^= b
}

func (t *SeqTracker) marked(n int64) bool {
	w, b := t.slot(n)
	return t.seen[w]&b != 0
}
