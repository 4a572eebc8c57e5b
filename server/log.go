package server

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/focus-sfu/focus/config"
)

// NewLogger builds the process logger from the log section: level, and
// console (human, coloured on a terminal) or json (one object per line).
func NewLogger(w io.Writer, c config.Log) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		return zerolog.Nop(), &config.Error{Key: "log.level", Problem: fmt.Sprintf("%q is not a log level", c.Level)}
	}
	switch c.Format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.DateTime, NoColor: !isTerminal(w)}
	default:
		return zerolog.Nop(), &config.Error{Key: "log.format", Problem: fmt.Sprintf("%q is not console or json", c.Format)}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
