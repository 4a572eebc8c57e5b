package config

import "strconv"

// Error is a configuration problem. Key is the dotted key path (with list
// indexes, e.g. "whip.tokens[0].rooms"), empty when the problem is with the
// file as a whole.
type Error struct {
	Key     string
	Problem string
	// Err is the underlying error, if any (for example from reading the file).
	Err error
}

// problemUnknownKey is the Problem of an unknown-key error, which reads
// better with the key quoted after the problem.
const problemUnknownKey = "unknown key"

func (e *Error) Error() string {
	switch {
	case e.Key == "":
		return "config: " + e.Problem
	case e.Problem == problemUnknownKey:
		return "config: unknown key " + strconv.Quote(e.Key)
	default:
		return "config: " + e.Key + ": " + e.Problem
	}
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(key, problem string) *Error {
	return &Error{Key: key, Problem: problem}
}
