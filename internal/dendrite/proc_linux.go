//go:build linux

package dendrite

import (
	"os/exec"
	"syscall"
)

// prepare makes the kernel kill Dendrite if the test binary dies without
// cleaning up (a test timeout, a kill).
func prepare(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
