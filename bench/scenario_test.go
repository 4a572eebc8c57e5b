package bench

import (
	"testing"
)

func TestNewPlan(t *testing.T) {
	for _, tc := range []struct {
		sc               Scenario
		size, pubs       int
		wantPubs, wantSu int
		audio, video     bool
	}{
		{Livestream, 100, 0, 1, 100, true, true},
		{Meeting, 20, 0, 20, 20 * 19, true, true},
		{Audio, 50, 10, 10, 500, true, false},
	} {
		t.Run(string(tc.sc), func(t *testing.T) {
			p, err := NewPlan(tc.sc, tc.size, tc.pubs)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Publishers) != tc.wantPubs || len(p.Subscribers) != tc.wantSu {
				t.Fatalf("%d publishers, %d subscriber connections; want %d, %d", len(p.Publishers), len(p.Subscribers), tc.wantPubs, tc.wantSu)
			}
			for _, pub := range p.Publishers {
				if pub.Audio != tc.audio || pub.Video != tc.video {
					t.Errorf("publisher %+v: want audio %v video %v", pub, tc.audio, tc.video)
				}
			}
			// Each subscriber watches each publisher it should once, and
			// never itself in a meeting.
			seen := map[[2]int]bool{}
			perPub := map[int]int{}
			for _, s := range p.Subscribers {
				k := [2]int{s.Index, s.Publisher}
				if seen[k] {
					t.Errorf("subscriber %d watches publisher %d twice", s.Index, s.Publisher)
				}
				seen[k] = true
				perPub[s.Publisher]++
				if tc.sc == Meeting && s.Index == s.Publisher {
					t.Errorf("participant %d watches itself", s.Index)
				}
				if s.Audio != tc.audio || s.Video != tc.video {
					t.Errorf("subscriber %+v: want audio %v video %v", s, tc.audio, tc.video)
				}
			}
			for j, n := range perPub {
				if want := tc.wantSu / tc.wantPubs; n != want {
					t.Errorf("publisher %d has %d subscriber connections, want %d", j, n, want)
				}
			}
			if p.Describe() == "" {
				t.Error("no description")
			}
		})
	}
}

func TestNewPlanErrors(t *testing.T) {
	for _, tc := range []struct {
		sc         Scenario
		size, pubs int
	}{
		{Livestream, 0, 0},
		{Meeting, 1, 0},
		{Audio, 5, 0},
		{"party", 5, 1},
	} {
		if _, err := NewPlan(tc.sc, tc.size, tc.pubs); err == nil {
			t.Errorf("NewPlan(%q, %d, %d) accepted", tc.sc, tc.size, tc.pubs)
		}
	}
	if _, err := ParseScenario("Meeting"); err != nil {
		t.Errorf("ParseScenario(Meeting): %v", err)
	}
	if _, err := ParseScenario("webinar"); err == nil {
		t.Error("ParseScenario(webinar) accepted")
	}
	if _, err := ParseFeedback("remb"); err != nil {
		t.Errorf("ParseFeedback(remb): %v", err)
	}
	if _, err := ParseFeedback("gcc"); err == nil {
		t.Error("ParseFeedback(gcc) accepted")
	}
}

func TestLayerShapes(t *testing.T) {
	l := Load{VideoPPS: 400, FPS: 30}
	if s := l.layerShapes(); len(s) != 1 || s[0].pps != 400 || s[0].rid != "" {
		t.Errorf("single layer: %+v", s)
	}
	l.Simulcast = true
	s := l.layerShapes()
	if len(s) != 3 || s[0].rid != "q" || s[1].rid != "h" || s[2].rid != "f" {
		t.Fatalf("simulcast layers %+v, want q, h, f", s)
	}
	if s[0].pps != 30 || s[1].pps != 100 || s[2].pps != 400 {
		t.Errorf("simulcast rates %d/%d/%d, want 30/100/400 (at least a packet a frame)", s[0].pps, s[1].pps, s[2].pps)
	}
}
