package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/server"
)

// Flag names; each has an environment variable FOCUS_<NAME>.
const (
	flagConfig       = "config"
	flagListen       = "listen"
	flagLogLevel     = "log-level"
	flagLogFormat    = "log-format"
	flagUDPPort      = "udp-port"
	flagInsecureOpen = "insecure-open"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "run the SFU",
		UsageText: "focus serve [--config FILE] [--listen HOST:PORT] [--udp-port PORT] [--log-level LEVEL] [--log-format FORMAT] [--insecure-open]",
		Description: "Serves the web page, WHIP (/whip/{room}) and WHEP (/whep/{room}) on --listen,\n" +
			"and media on one UDP port. Settings come from, lowest priority first:\n" +
			"built-in defaults, the --config file, environment variables, flags.\n" +
			"Without whip.tokens the focus only listens on loopback, unless --insecure-open.\n" +
			"SIGINT or SIGTERM ends every session and exits within 5 s.\n" +
			"Exit codes: 0 clean shutdown, 1 failure while running, 2 bad flag or config.",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:      flagConfig,
				Aliases:   []string{"c"},
				Usage:     "read settings from the YAML `FILE` (every key: config.sample.yaml); without it, built-in defaults",
				EnvVars:   []string{"FOCUS_CONFIG"},
				TakesFile: true,
			},
			&cli.StringFlag{
				Name:        flagListen,
				Usage:       "`HOST:PORT` of the main HTTP listener (config: listen); port 0 picks a free port",
				EnvVars:     []string{"FOCUS_LISTEN"},
				DefaultText: "127.0.0.1:8080",
			},
			&cli.IntFlag{
				Name:        flagUDPPort,
				Usage:       "the one UDP `PORT` that carries all media (config: webrtc.udp_port); 0 picks a free port",
				EnvVars:     []string{"FOCUS_UDP_PORT"},
				DefaultText: "7882",
			},
			&cli.StringFlag{
				Name:        flagLogLevel,
				Usage:       "`LEVEL` of logging: trace, debug, info, warn or error (config: log.level)",
				EnvVars:     []string{"FOCUS_LOG_LEVEL"},
				DefaultText: "info",
			},
			&cli.StringFlag{
				Name:        flagLogFormat,
				Usage:       "`FORMAT` of the log: console (human) or json (config: log.format)",
				EnvVars:     []string{"FOCUS_LOG_FORMAT"},
				DefaultText: "console",
			},
			&cli.BoolFlag{
				Name: flagInsecureOpen,
				Usage: "allow running without whip.tokens on a non-loopback listener, so anyone who can reach it " +
					"can publish and watch (config: whip.insecure_open)",
				EnvVars: []string{"FOCUS_INSECURE_OPEN"},
			},
		},
		OnUsageError: usageError,
		Action:       serve,
	}
}

// serveGCPercent is the garbage collector's goal when GOGC is not set:
// the heap may grow 25 % past what is live before a collection, not Go's
// default 100 %. A focus's heap is almost all long-lived connection state,
// and forwarding allocates nothing per packet, so collections stay cheap
// (at 100 subscribers one every 1.6 s, about 7 ms of CPU) while the
// headroom, a third of the resident memory a subscriber added, shrinks
// to a quarter. docs/operations.md has the figures; GOGC overrides it.
const serveGCPercent = 25

func serve(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("serve takes no arguments, got %q; see focus serve --help", c.Args().First())
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	log, err := server.NewLogger(c.App.ErrWriter, cfg.Log)
	if err != nil {
		return err
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
		log.Debug().Int("gc_percent", serveGCPercent).Msg("garbage collector goal (GOGC unset)")
	}
	s, err := server.New(c.Context, cfg, log)
	if err != nil {
		if errors.As(err, new(*config.Error)) {
			return err
		}
		return runtimeError{err}
	}
	if err := s.Run(c.Context); err != nil {
		return runtimeError{err}
	}
	return nil
}

// loadConfig layers the config file (or the defaults) under the flags and
// environment variables that were given, and validates the result.
func loadConfig(c *cli.Context) (config.Config, error) {
	cfg := config.Default()
	if path := c.String(flagConfig); path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return config.Config{}, err
		}
	}
	if c.IsSet(flagListen) {
		cfg.Listen = c.String(flagListen)
	}
	if c.IsSet(flagUDPPort) {
		cfg.WebRTC.UDPPort = c.Int(flagUDPPort)
	}
	if c.IsSet(flagLogLevel) {
		cfg.Log.Level = c.String(flagLogLevel)
	}
	if c.IsSet(flagLogFormat) {
		cfg.Log.Format = c.String(flagLogFormat)
	}
	if c.IsSet(flagInsecureOpen) {
		cfg.WHIP.InsecureOpen = c.Bool(flagInsecureOpen)
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}
