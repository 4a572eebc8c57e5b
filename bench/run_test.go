package bench

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/focus-sfu/focus/internal/focustest"
)

// TestRunAgainstFocus runs every scenario, small and short, against a
// focus running in this process, through the url target: the generator,
// the window, the tally and the sessions' DELETE at the end, under -race.
// CPU and RSS are this process's, generator included, so only their
// presence is checked; cmd/focus's TestBench measures a real server.
func TestRunAgainstFocus(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sc        Scenario
		size      int
		simulcast bool
		feedback  Feedback
	}{
		{"livestream", Livestream, 2, false, FeedbackTWCC},
		{"livestream simulcast", Livestream, 2, true, FeedbackTWCC},
		{"meeting", Meeting, 3, false, FeedbackREMB},
		{"audio", Audio, 2, false, FeedbackTWCC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := focustest.Start(t, nil)
			o := Options{
				Scenario: tc.sc, Sizes: []int{tc.size}, Publishers: 2, Runs: 1,
				Load:    Load{VideoPPS: 200, Simulcast: tc.simulcast, Feedback: tc.feedback},
				Targets: []Target{&URLTarget{WHIP: f.URL + "/whip/{room}", WHEP: f.URL + "/whep/{room}?stream={stream}", PID: os.Getpid()}},
				Settle:  200 * time.Millisecond, Warmup: 500 * time.Millisecond, Duration: 1500 * time.Millisecond,
				ServerCPU: -1, ClientCPU: -1,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rep, err := Run(ctx, o)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			plan, _ := NewPlan(tc.sc, tc.size, 2)
			if len(rep.Results) != 1 || rep.Results[0].SubscriberConnections != len(plan.Subscribers) {
				t.Fatalf("results %+v", rep.Results)
			}
			r := rep.Results[0].Runs[0]
			if r.PacketsSent == 0 || r.PacketsReceived == 0 {
				t.Fatalf("sent %d, received %d", r.PacketsSent, r.PacketsReceived)
			}
			if !r.Delivered.Valid() || r.Delivered < 0.99 || r.WorstDelivered < 0.95 {
				t.Errorf("delivered %v, worst subscriber %v", r.Delivered, r.WorstDelivered)
			}
			if tc.sc == Audio && r.DeliveredVideo.Valid() {
				t.Errorf("audio only, yet delivered video is %v", r.DeliveredVideo)
			}
			for name, f := range map[string]Figure{
				"cpu": r.CPUPerPacket, "delay p50": r.DelayP50, "delay p99": r.DelayP99,
				"read delay p99": r.ReadDelayP99, "setup": r.SetupMedian, "connect": r.ConnectMedian,
				"rss before": r.RSSBefore, "bit rate out": r.BitrateOut, "generator cpu": r.ClientCPUUtil,
			} {
				if !f.Valid() || f <= 0 {
					t.Errorf("%s = %v, want a positive figure", name, f)
				}
			}
			// Without a floor command there is no floor.
			if r.Floor.Valid() || r.FloorRatio.Valid() || r.FloorBytes == 0 {
				t.Errorf("floor %v ratio %v over %d bytes, want none measured", r.Floor, r.FloorRatio, r.FloorBytes)
			}
			// A server the bench does not own gets its sessions deleted.
			resp, err := http.Get(f.URL + "/api/rooms")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var rooms struct {
				Rooms []json.RawMessage `json:"rooms"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&rooms); err != nil || len(rooms.Rooms) != 0 {
				t.Errorf("rooms left after the run: %d %v", len(rooms.Rooms), err)
			}
		})
	}
}

func TestRunFailures(t *testing.T) {
	ctx := context.Background()
	if _, err := Run(ctx, Options{}); err == nil {
		t.Error("Run without targets succeeded")
	}
	// A server that refuses every offer: the run fails, and says why.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no publishing today", http.StatusForbidden)
	}))
	defer ts.Close()
	o := Options{Sizes: []int{1}, Runs: 1, Duration: time.Second, ServerCPU: -1,
		Targets: []Target{&URLTarget{WHIP: ts.URL + "/whip/{room}", WHEP: ts.URL + "/whep/{room}"}}}
	rep, err := Run(ctx, o)
	if err == nil || rep == nil || rep.Results[0].Summary.FailedRuns != 1 {
		t.Fatalf("Run against a refusing server = %v, %+v", err, rep)
	}
	if r := rep.Results[0].Runs[0]; !strings.Contains(r.Error, "status 403: no publishing today") || r.CPUPerPacket.Valid() {
		t.Errorf("failed run %+v", r)
	}
}
