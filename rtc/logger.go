package rtc

import (
	"github.com/pion/logging"
	"github.com/rs/zerolog"
)

// loggerFactory routes pion's logs into zerolog. pion is chatty about
// conditions that are normal for a server (peers that vanish, late
// packets), so its warnings go out at debug and its errors as warnings.
//
// Messages are formatted only when their level is enabled (zerolog's
// Msgf on a disabled event does nothing): besides the cost, pion logs
// some structures while another of its goroutines changes them, and
// formatting those races.
type loggerFactory struct{ log zerolog.Logger }

func newLoggerFactory(log zerolog.Logger) *loggerFactory { return &loggerFactory{log: log} }

// NewLogger returns a logger that adds the scope to each message it
// writes. pion asks for about a dozen loggers per connection and rarely
// writes to them, so the scope is not baked into a child logger: each
// zerolog child holds a context buffer of its own, which was 6 KB a
// subscriber.
func (f *loggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: &f.log, scope: scope}
}

type pionLogger struct {
	log   *zerolog.Logger
	scope string
}

func (l pionLogger) at(e *zerolog.Event) *zerolog.Event { return e.Str("pion", l.scope) }

func (l pionLogger) Trace(msg string)                  { l.at(l.log.Trace()).Msg(msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.at(l.log.Trace()).Msgf(format, args...) }
func (l pionLogger) Debug(msg string)                  { l.at(l.log.Trace()).Msg(msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.at(l.log.Trace()).Msgf(format, args...) }
func (l pionLogger) Info(msg string)                   { l.at(l.log.Debug()).Msg(msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.at(l.log.Debug()).Msgf(format, args...) }
func (l pionLogger) Warn(msg string)                   { l.at(l.log.Debug()).Msg(msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.at(l.log.Debug()).Msgf(format, args...) }
func (l pionLogger) Error(msg string)                  { l.at(l.log.Warn()).Msg(msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.at(l.log.Warn()).Msgf(format, args...) }
