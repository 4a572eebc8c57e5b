package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// Progress reports a bench's progress. On a terminal it keeps one status
// line, redrawn in place, with a bar for counted stages; elsewhere (a log,
// a CI job) it writes a line per stage and none per count. Each run's
// result is a line of its own either way. A nil *Progress is silent.
type Progress struct {
	w   io.Writer
	tty bool

	mu     sync.Mutex
	status bool // a status line is on screen
	last   string
}

// NewProgress reports to w, redrawing a status line when tty is set.
func NewProgress(w io.Writer, tty bool) *Progress {
	return &Progress{w: w, tty: tty}
}

// Stage says what a run is doing.
func (p *Progress) Stage(label, stage string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.show(label + ": " + stage)
}

// Count shows progress through a counted stage.
func (p *Progress) Count(label, stage string, done, total int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tty {
		if done == 0 {
			p.show(fmt.Sprintf("%s: %s (%d)", label, stage, total))
		}
		return
	}
	const width = 24
	filled := 0
	if total > 0 {
		filled = min(width, done*width/total)
	}
	p.show(fmt.Sprintf("%s: %s [%s%s] %d/%d", label, stage,
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total))
}

// Result writes a run's outcome as a line of its own.
func (p *Progress) Result(label string, r RunResult) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	if r.Error != "" {
		fmt.Fprintf(p.w, "%s: FAILED: %s\n", label, r.Error)
		return
	}
	fmt.Fprintf(p.w, "%s: %s µs/packet, floor %s µs (x%s), delivered %s, delay p99 %s ms, setup %s ms, server %s cores, generator %s\n",
		label, fmtFig(r.CPUPerPacket, "%.2f"), fmtFig(r.Floor, "%.2f"), fmtFig(r.FloorRatio, "%.2f"),
		fmtFig(r.Delivered, "%.4f"), fmtFig(r.DelayP99, "%.2f"), fmtFig(r.SetupMedian, "%.0f"),
		fmtFig(r.ServerCPUUtil, "%.2f"), fmtFig(r.ClientCPUUtil, "%.2f"))
}

// Done clears the status line.
func (p *Progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *Progress) show(s string) {
	if s == p.last {
		return
	}
	p.last = s
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s", s)
		p.status = true
		return
	}
	fmt.Fprintln(p.w, s)
}

func (p *Progress) clear() {
	if p.tty && p.status {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.status = false
	}
	p.last = ""
}

func fmtFig(f Figure, format string) string {
	if !f.Valid() {
		return "-"
	}
	return fmt.Sprintf(format, float64(f))
}
