// Package speaker finds who is talking in a conference from the audio level
// every sender already puts in its RTP packets (RFC 6464), so the focus never
// decodes audio, and works the same when the media is end-to-end encrypted.
//
// Three parts, one per rate:
//   - ParseAudioLevel reads the header extension of one packet;
//   - a Meter per audio track accumulates those levels between ticks, from the
//     track's read loop, lock-free and without allocating;
//   - a Detector, owned by the core's periodic tick, smooths each track's
//     level over time and ranks the tracks that are speaking.
//
// Levels cross the package boundary as linear amplitudes in 0..1 (1 is a
// full-scale signal, 0 silence): averaging amplitudes weights a loud word
// over a quiet pause the way a listener does, where averaging the dBov
// numbers of the wire would let a few silent packets (127) drown a sentence.
package speaker

import "math"

// maxLevel is the quietest level RFC 6464 can express: -127 dBov, which
// senders also use for digital silence.
const maxLevel = 127

// ParseAudioLevel reads an RFC 6464 audio level header extension value, as
// returned by the RTP packet's extension lookup. level is the level in -dBov
// (0 loudest .. 127 silence) and voice the sender's voice activity flag.
//
// ok is false unless the value is exactly one byte, the only length RFC 6464
// defines: any other length means the negotiated extension ID carries
// something else, and its first byte would be an invented level.
func ParseAudioLevel(ext []byte) (level uint8, voice bool, ok bool) {
	if len(ext) != 1 {
		return 0, false, false
	}
	return ext[0] & 0x7f, ext[0]&0x80 != 0, true
}

// Linear converts a level in -dBov (as RFC 6464 carries it, 0 loudest) to
// the linear amplitude this package works in: 10^(-level/20). It lets a
// configuration state a threshold in the unit people measure audio in, e.g.
// Linear(50) for -50 dBov.
func Linear(level float64) float64 {
	return math.Pow(10, -level/20)
}
