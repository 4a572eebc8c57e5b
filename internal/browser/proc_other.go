//go:build !linux

package browser

import (
	"os/exec"
	"time"
)

// procs leaves process cleanup to chromedp on systems other than Linux; the
// focus is tested on Linux.
type procs struct{}

func (p *procs) prepare(cmd *exec.Cmd) {}

func (p *procs) killAll(dir string, timeout time.Duration) error { return nil }

func (p *procs) running(dir string) []int { return nil }

func (p *procs) remaining(dir string) []int { return nil }
