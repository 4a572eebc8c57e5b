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

// DemandChanged is raised when the set of layers anyone wants from a
// track changes. Wanted[i] reports whether layer i has any subscriber.
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
