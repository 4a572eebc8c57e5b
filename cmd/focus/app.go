package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/urfave/cli/v2"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1 // the focus failed while starting or running
	exitUsage   = 2 // bad command line, flag, environment variable or config
)

// runtimeError marks a failure of a correctly configured focus. Every other
// error out of the CLI is a usage or configuration error.
type runtimeError struct{ err error }

func (e runtimeError) Error() string { return e.err.Error() }
func (e runtimeError) Unwrap() error { return e.err }

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := newApp(stdout, stderr).RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "focus: %v\n", err)
	if errors.As(err, new(runtimeError)) {
		return exitRuntime
	}
	return exitUsage
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "focus",
		Usage:     "a selective forwarding unit (SFU) for WebRTC, with WHIP/WHEP ingest and playback",
		UsageText: "focus serve [flags]\nfocus generate-registration --config FILE [--output FILE] [--force]\nfocus bench [flags]\nfocus version",
		Description: "Run `focus serve` and open the URL it logs. With no config file it listens on\n" +
			"127.0.0.1:8080 (HTTP) and UDP 7882 (media), open to anyone on this host.\n" +
			"See docs/configuration.md for the config file and deployment.",
		Writer:          stdout,
		ErrWriter:       stderr,
		HideVersion:     true,
		HideHelpCommand: true,
		Commands:        []*cli.Command{serveCommand(), generateRegistrationCommand(), benchCommand(), versionCommand()},
		// Errors come back to run, which picks the exit code.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   usageError,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("unknown command %q; see focus --help", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
}

// usageError replaces urfave/cli's help dump on a bad flag with one line.
func usageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w; see %s --help", err, c.Command.HelpName)
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version and the Go toolchain it was built with",
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprintf(c.App.Writer, "focus %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
