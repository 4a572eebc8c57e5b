//go:build !linux

package dendrite

import "os/exec"

// prepare does nothing where there is no parent-death signal; cleanup
// still stops Dendrite when a test ends normally.
func prepare(cmd *exec.Cmd) {}
