package bench

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"os"
	"slices"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// WritePlot draws the report's CPU per forwarded packet against size, one
// line per target with its min-max range as error bars, and the floor as a
// dashed grey line, into a PNG file at path.
func (rep *Report) WritePlot(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	w := bufio.NewWriter(f)
	err = rep.Plot(w)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bench: plot %s: %w", path, err)
	}
	return nil
}

// Plot geometry, in pixels.
const (
	plotW, plotH = 860, 520
	marginL      = 70
	marginR      = 170
	marginT      = 44
	marginB      = 56
)

var (
	plotColors = []color.RGBA{
		{0x1f, 0x77, 0xb4, 0xff}, // blue
		{0xd6, 0x27, 0x28, 0xff}, // red
		{0x2c, 0xa0, 0x2c, 0xff}, // green
		{0x94, 0x67, 0xbd, 0xff}, // purple
	}
	floorColor = color.RGBA{0x80, 0x80, 0x80, 0xff}
	gridColor  = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
	inkColor   = color.RGBA{0x20, 0x20, 0x20, 0xff}
)

// series is one line of the plot.
type series struct {
	name   string
	points []plotPoint
}

type plotPoint struct {
	x             float64
	y, ylo, yhi   float64
	hasY, hasBars bool
}

// Plot encodes the plot as PNG to w.
func (rep *Report) Plot(w io.Writer) error {
	var lines []series
	floors := map[int][]Figure{}
	for _, r := range rep.Results {
		i := slices.IndexFunc(lines, func(s series) bool { return s.name == r.Target })
		if i < 0 {
			lines = append(lines, series{name: r.Target})
			i = len(lines) - 1
		}
		c := r.Summary.CPUPerPacket
		p := plotPoint{x: float64(r.Size)}
		if c.N > 0 {
			p.y, p.ylo, p.yhi, p.hasY, p.hasBars = float64(c.Median), float64(c.Min), float64(c.Max), true, c.N > 1
		}
		lines[i].points = append(lines[i].points, p)
		for _, run := range r.Runs {
			floors[r.Size] = append(floors[r.Size], run.Floor)
		}
	}
	floor := series{name: "floor"}
	for size, fs := range floors {
		if s := SpreadOf(fs); s.N > 0 {
			floor.points = append(floor.points, plotPoint{x: float64(size), y: float64(s.Median), hasY: true})
		}
	}
	slices.SortFunc(floor.points, func(a, b plotPoint) int { return int(a.x - b.x) })

	xmax, ymax := 1.0, 1.0
	for _, s := range append(slices.Clone(lines), floor) {
		for _, p := range s.points {
			xmax = math.Max(xmax, p.x)
			if p.hasY {
				ymax = math.Max(ymax, math.Max(p.y, p.yhi))
			}
		}
	}
	xstep := niceStep(xmax, 6)
	xmax = math.Ceil(xmax*1.02/xstep) * xstep
	ystep := niceStep(ymax*1.1, 6)
	ymax = math.Ceil(ymax*1.1/ystep) * ystep

	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	x0, y0 := marginL, plotH-marginB
	x1, y1 := plotW-marginR, marginT
	px := func(x float64) int { return x0 + int(math.Round(x/xmax*float64(x1-x0))) }
	py := func(y float64) int { return y0 - int(math.Round(y/ymax*float64(y0-y1))) }

	for v := 0.0; v <= ymax+ystep/2; v += ystep {
		hline(img, x0, x1, py(v), gridColor)
		label := trimFloat(v)
		text(img, x0-8-7*len(label), py(v)+4, label, inkColor)
	}
	for v := 0.0; v <= xmax+xstep/2; v += xstep {
		vline(img, px(v), y0, y0+5, inkColor)
		label := trimFloat(v)
		text(img, px(v)-7*len(label)/2, y0+18, label, inkColor)
	}
	hline(img, x0, x1, y0, inkColor)
	vline(img, x0, y1, y0, inkColor)

	title := fmt.Sprintf("server CPU us per forwarded packet, %s", rep.Config.Scenario)
	text(img, x0, marginT-18, title, inkColor)
	xlabel := rep.Config.SizeName
	text(img, (x0+x1)/2-7*len(xlabel)/2, plotH-14, xlabel, inkColor)

	for i, s := range lines {
		c := plotColors[i%len(plotColors)]
		var prev *plotPoint
		for j := range s.points {
			p := &s.points[j]
			if !p.hasY {
				prev = nil
				continue
			}
			if prev != nil {
				line(img, px(prev.x), py(prev.y), px(p.x), py(p.y), c, 0)
			}
			if p.hasBars {
				vline(img, px(p.x), py(p.yhi), py(p.ylo), c)
				hline(img, px(p.x)-4, px(p.x)+4, py(p.yhi), c)
				hline(img, px(p.x)-4, px(p.x)+4, py(p.ylo), c)
			}
			square(img, px(p.x), py(p.y), 3, c)
			prev = p
		}
	}
	for j := 1; j < len(floor.points); j++ {
		a, b := floor.points[j-1], floor.points[j]
		line(img, px(a.x), py(a.y), px(b.x), py(b.y), floorColor, 6)
	}
	if len(floor.points) == 1 {
		p := floor.points[0]
		line(img, x0, py(p.y), x1, py(p.y), floorColor, 6)
	}

	// Legend.
	lx, ly := x1+20, y1+10
	for i, s := range lines {
		c := plotColors[i%len(plotColors)]
		line(img, lx, ly, lx+24, ly, c, 0)
		square(img, lx+12, ly, 3, c)
		text(img, lx+32, ly+4, s.name, inkColor)
		ly += 20
	}
	if len(floor.points) > 0 {
		line(img, lx, ly, lx+24, ly, floorColor, 6)
		text(img, lx+32, ly+4, "floor", inkColor)
		ly += 20
	}
	text(img, lx, ly+10, "median of runs,", inkColor)
	text(img, lx, ly+26, "bars: min-max", inkColor)
	return png.Encode(w, img)
}

// niceStep is a round tick step (1, 2 or 5 times a power of ten) giving
// about n ticks up to max.
func niceStep(max float64, n int) float64 {
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func trimFloat(v float64) string {
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func hline(img *image.RGBA, xa, xb, y int, c color.Color) {
	for x := min(xa, xb); x <= max(xa, xb); x++ {
		img.Set(x, y, c)
	}
}

func vline(img *image.RGBA, x, ya, yb int, c color.Color) {
	for y := min(ya, yb); y <= max(ya, yb); y++ {
		img.Set(x, y, c)
	}
}

func square(img *image.RGBA, x, y, r int, c color.Color) {
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			img.Set(x+dx, y+dy, c)
		}
	}
}

// line draws a two-pixel line from (xa, ya) to (xb, yb); dash > 0 leaves
// gaps of that length.
func line(img *image.RGBA, xa, ya, xb, yb int, c color.Color, dash int) {
	dx, dy := float64(xb-xa), float64(yb-ya)
	n := int(math.Max(math.Abs(dx), math.Abs(dy)))
	for i := 0; i <= n; i++ {
		if dash > 0 && (i/dash)%2 == 1 {
			continue
		}
		t := 0.0
		if n > 0 {
			t = float64(i) / float64(n)
		}
		x, y := xa+int(math.Round(t*dx)), ya+int(math.Round(t*dy))
		img.Set(x, y, c)
		img.Set(x, y+1, c)
	}
}
