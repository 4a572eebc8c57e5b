package bench

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunFloor(t *testing.T) {
	r, err := RunFloor(1000, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// One sendto and one recv of 1 KB on loopback cost microseconds: a
	// result far outside that means the loop or the accounting is wrong.
	if r.Size != 1000 || r.Datagrams < 1000 || r.PerDatagram < 0.05 || r.PerDatagram > 500 {
		t.Errorf("RunFloor = %+v", r)
	}
	if got := float64(r.CPU) / float64(time.Microsecond) / float64(r.Datagrams); got != r.PerDatagram {
		t.Errorf("PerDatagram %v, but CPU/Datagrams is %v", r.PerDatagram, got)
	}
}

// MeasureFloor runs `focus bench floor` in a child and reads its JSON;
// here shell children stand in for it (cmd/focus's test runs the real one).
func TestMeasureFloorChild(t *testing.T) {
	_, err := MeasureFloor(context.Background(), []string{"/bin/sh", "-c", `echo '{"size":1000,"datagrams":0}'`, "sh"}, -1, 1000, time.Millisecond)
	if err == nil {
		t.Error("a child that measured nothing was accepted")
	}
	r, err := MeasureFloor(context.Background(), []string{"/bin/sh", "-c", `echo '{"size":1000,"datagrams":10,"cpu_ns":50000,"us_per_datagram":5}'`, "sh"}, -1, 1000, time.Millisecond)
	if err != nil || r.PerDatagram != 5 || r.Datagrams != 10 {
		t.Errorf("MeasureFloor = %+v %v", r, err)
	}
	if _, err := MeasureFloor(context.Background(), []string{"/bin/sh", "-c", "echo broken >&2; exit 3"}, -1, 1000, time.Millisecond); err == nil {
		t.Error("a failing child was accepted")
	}
	if _, err := exec.LookPath("taskset"); err == nil {
		// Pinned: taskset runs the command on CPU 0.
		r, err := MeasureFloor(context.Background(), []string{"/bin/sh", "-c", `echo '{"datagrams":1,"us_per_datagram":1}'`, "sh"}, 0, 1000, time.Millisecond)
		if err != nil || r.Datagrams != 1 {
			t.Errorf("pinned MeasureFloor = %+v %v", r, err)
		}
	}
}
