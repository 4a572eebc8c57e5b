package bench

import (
	"fmt"
	"strings"
)

// Scenario is a shape of load, after LiveKit's published benchmark.
type Scenario string

// The scenarios.
const (
	// Audio is P publishers × S subscribers, audio only: every subscriber
	// hears every publisher.
	Audio Scenario = "audio"
	// Meeting is N participants with audio and video, each watching
	// everyone else.
	Meeting Scenario = "meeting"
	// Livestream is one publisher with audio and video × N subscribers.
	Livestream Scenario = "livestream"
)

// ParseScenario checks a scenario name.
func ParseScenario(s string) (Scenario, error) {
	switch sc := Scenario(strings.ToLower(s)); sc {
	case Audio, Meeting, Livestream:
		return sc, nil
	}
	return "", fmt.Errorf("bench: unknown scenario %q (audio, meeting or livestream)", s)
}

// SizeName names what the scenario's size counts.
func (s Scenario) SizeName() string {
	if s == Meeting {
		return "participants"
	}
	return "subscribers"
}

// PublisherSpec is one publisher of a plan.
type PublisherSpec struct {
	Index        int
	Audio, Video bool
}

// SubscriberSpec is one subscriber connection of a plan: subscriber Index
// watching publisher Publisher. A subscriber that watches several
// publishers (a meeting participant, an audio listener) has one connection
// per publisher, on every target, so that each target carries the same
// connections.
type SubscriberSpec struct {
	Index, Publisher int
	Audio, Video     bool
}

// Plan is the connections of one run.
type Plan struct {
	Scenario    Scenario
	Size        int
	Publishers  []PublisherSpec
	Subscribers []SubscriberSpec
}

// NewPlan lays out a scenario of the given size (subscribers, or
// participants for a meeting), with publishers publishers for Audio.
func NewPlan(sc Scenario, size, publishers int) (Plan, error) {
	p := Plan{Scenario: sc, Size: size}
	if size < 1 {
		return Plan{}, fmt.Errorf("bench: %s needs at least 1 %s, got %d", sc, sc.SizeName(), size)
	}
	switch sc {
	case Audio:
		if publishers < 1 {
			return Plan{}, fmt.Errorf("bench: audio needs at least 1 publisher, got %d", publishers)
		}
		for j := range publishers {
			p.Publishers = append(p.Publishers, PublisherSpec{Index: j, Audio: true})
		}
		for i := range size {
			for j := range publishers {
				p.Subscribers = append(p.Subscribers, SubscriberSpec{Index: i, Publisher: j, Audio: true})
			}
		}
	case Meeting:
		if size < 2 {
			return Plan{}, fmt.Errorf("bench: a meeting needs at least 2 participants, got %d", size)
		}
		for j := range size {
			p.Publishers = append(p.Publishers, PublisherSpec{Index: j, Audio: true, Video: true})
		}
		for i := range size {
			for j := range size {
				if i != j {
					p.Subscribers = append(p.Subscribers, SubscriberSpec{Index: i, Publisher: j, Audio: true, Video: true})
				}
			}
		}
	case Livestream:
		p.Publishers = []PublisherSpec{{Index: 0, Audio: true, Video: true}}
		for i := range size {
			p.Subscribers = append(p.Subscribers, SubscriberSpec{Index: i, Publisher: 0, Audio: true, Video: true})
		}
	default:
		return Plan{}, fmt.Errorf("bench: unknown scenario %q", sc)
	}
	return p, nil
}

// Describe says in a few words what the plan is.
func (p Plan) Describe() string {
	switch p.Scenario {
	case Audio:
		return fmt.Sprintf("audio, %d publishers x %d subscribers (%d connections)", len(p.Publishers), p.Size, len(p.Subscribers))
	case Meeting:
		return fmt.Sprintf("meeting, %d x %d (%d subscriber connections)", p.Size, p.Size, len(p.Subscribers))
	default:
		return fmt.Sprintf("livestream, 1 publisher x %d subscribers", p.Size)
	}
}
