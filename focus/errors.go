package focus

import "errors"

// Errors returned by the control plane. Front-ends map them to their own
// status codes.
var (
	ErrConferenceFull = errors.New("focus: conference is full")
	ErrServerFull     = errors.New("focus: server is full")
	ErrClosed         = errors.New("focus: closed")
	ErrCodecMismatch  = errors.New("focus: codec mismatch")
	ErrKindMismatch   = errors.New("focus: kind mismatch")
)
