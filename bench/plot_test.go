package bench

import (
	"bytes"
	"image/png"
	"path/filepath"
	"testing"
)

func TestReportPlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.png")
	if err := sampleReport().WritePlot(path); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := sampleReport().Plot(&b); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if s := img.Bounds().Size(); s.X != plotW || s.Y != plotH {
		t.Errorf("plot is %v, want %dx%d", s, plotW, plotH)
	}
	// The two targets' colours are on it.
	found := map[int]bool{}
	for y := 0; y < plotH; y++ {
		for x := 0; x < plotW; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for i, c := range plotColors[:2] {
				if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bl>>8) == c.B {
					found[i] = true
				}
			}
		}
	}
	if len(found) != 2 {
		t.Errorf("plot shows %d of the 2 targets' lines", len(found))
	}
	if err := sampleReport().WritePlot(filepath.Join(t.TempDir(), "no", "such", "dir.png")); err == nil {
		t.Error("WritePlot into a missing directory succeeded")
	}
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ max, want float64 }{{100, 20}, {9.5, 2}, {12, 2}, {0.3, 0.05}, {1, 0.2}} {
		if got := niceStep(tc.max, 6); got != tc.want {
			t.Errorf("niceStep(%v) = %v, want %v", tc.max, got, tc.want)
		}
	}
}
