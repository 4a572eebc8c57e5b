package focus

// Event is something the core tells the front-ends. Handlers run on the
// goroutine that caused the event, after the core has released its locks,
// so they may call back into the core; they must not block for long.
type Event interface{ event() }

// ParticipantJoined is raised after a participant joined a conference.
type ParticipantJoined struct {
	Conference  *Conference
	Participant *Participant
}

// ParticipantLeft is raised after a participant left; its tracks have
// been unpublished first.
type ParticipantLeft struct {
	Conference  *Conference
	Participant *Participant
}

// TrackPublished is raised when a participant publishes a track.
type TrackPublished struct {
	Conference  *Conference
	Participant *Participant
	Track       *UpTrack
}

// TrackUnpublished is raised when a track ends. Its down tracks have been
// detached; a front-end may move them to another source.
type TrackUnpublished struct {
	Conference  *Conference
	Participant *Participant
	Track       *UpTrack
}

// DemandChanged is raised when the set of layers anyone may need from a
// track changes, so that the publisher can stop sending the others.
// Wanted[i] reports whether layer i is needed: every layer up to the
// highest that a subscriber wants is, so that subscribers short of
// bandwidth have lower layers to fall back to. All false means nobody
// watches the track (see Options.KeepUnwatched). Audio tracks have one
// layer; front-ends that only pause video ignore their demand.
type DemandChanged struct {
	Conference *Conference
	Track      *UpTrack
	Wanted     []bool
}

func (ParticipantJoined) event() {}
func (ParticipantLeft) event()   {}
func (TrackPublished) event()    {}
func (TrackUnpublished) event()  {}
func (DemandChanged) event()     {}

// Speaker is one active speaker.
type Speaker struct {
	Participant *Participant
	Track       *UpTrack
	Level       float64 // smoothed audio level, 0 (silence) to 1 (loudest)
}

// SpeakersChanged is raised when the ordered list of a conference's
// active speakers changes. Speakers are loudest first; an empty list
// means nobody speaks.
type SpeakersChanged struct {
	Conference *Conference
	Speakers   []Speaker
}

// SubscriptionPaused is raised when the core stops forwarding a wanted
// track to a subscriber for lack of bandwidth (Paused), and when it
// resumes. A front-end tells the subscriber, so that it can show it.
type SubscriptionPaused struct {
	Conference *Conference
	Down       *DownTrack
	Track      *UpTrack
	Paused     bool
}

func (SpeakersChanged) event()    {}
func (SubscriptionPaused) event() {}
