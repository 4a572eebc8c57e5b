package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/matrix"
)

// Flags of generate-registration (--config is shared with serve).
const (
	flagOutput = "output"
	flagForce  = "force"
)

// defaultRegistrationFile is written when neither --output nor
// matrix.registration names a file.
const defaultRegistrationFile = "registration.yaml"

func generateRegistrationCommand() *cli.Command {
	return &cli.Command{
		Name:      "generate-registration",
		Usage:     "write the appservice registration file for the Matrix homeserver",
		UsageText: "focus generate-registration --config FILE [--output FILE] [--force]",
		Description: "Writes an appservice registration (random as_token and hs_token, an exclusive\n" +
			"namespace for the focus bot, to-device pushes on) built from the matrix section\n" +
			"of the config: server_name (required), bot_localpart, appservice_url or\n" +
			"appservice_listen. The file goes to --output, else to matrix.registration, else\n" +
			"to ./" + defaultRegistrationFile + ". An existing file is kept unless --force.\n" +
			"The config file is not modified: the command prints what to add to it.\n" +
			"Exit codes: 0 written, 1 cannot write, 2 bad flag or config, or the file exists.",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:      flagConfig,
				Aliases:   []string{"c"},
				Usage:     "the focus's YAML config `FILE`, whose matrix section describes the bot",
				EnvVars:   []string{"FOCUS_CONFIG"},
				TakesFile: true,
			},
			&cli.StringFlag{
				Name:      flagOutput,
				Aliases:   []string{"o"},
				Usage:     "write the registration to `FILE` (default: matrix.registration, else ./" + defaultRegistrationFile + ")",
				TakesFile: true,
			},
			&cli.BoolFlag{
				Name:  flagForce,
				Usage: "replace an existing registration file (the homeserver must then load the new tokens)",
			},
		},
		OnUsageError: usageError,
		Action:       generateRegistration,
	}
}

func generateRegistration(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("generate-registration takes no arguments, got %q; see focus generate-registration --help", c.Args().First())
	}
	cfgPath := c.String(flagConfig)
	if cfgPath == "" {
		return errors.New("generate-registration needs --config FILE: its matrix section names the server and the bot")
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	m := cfg.Matrix
	reg, err := matrix.NewRegistration(m)
	if err != nil {
		return err
	}
	out := c.String(flagOutput)
	if out == "" {
		out = m.Registration
	}
	if out == "" {
		out = defaultRegistrationFile
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return runtimeError{fmt.Errorf("registration path %s: %w", out, err)}
	}
	if err := matrix.WriteRegistration(abs, reg, c.Bool(flagForce)); err != nil {
		if errors.Is(err, matrix.ErrRegistrationExists) {
			return fmt.Errorf("%s exists; pass --force to replace it (the homeserver must then load the new tokens)", abs)
		}
		return runtimeError{err}
	}
	return printNextSteps(c.App.Writer, cfgPath, m, abs)
}

// printNextSteps tells the operator how to hand the file to the homeserver
// and what, if anything, to change in the focus's config.
func printNextSteps(w io.Writer, cfgPath string, m config.Matrix, reg string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Wrote the appservice registration for @%s:%s to %s\n\n", m.BotLocalpart, m.ServerName, reg)
	fmt.Fprintf(&b, "1. Give it to the homeserver and restart the homeserver:\n")
	fmt.Fprintf(&b, "     Synapse (homeserver.yaml):  app_service_config_files: [%s]\n", strconv.Quote(reg))
	fmt.Fprintf(&b, "     Dendrite (dendrite.yaml):   app_service_api: {config_files: [%s]}\n", strconv.Quote(reg))
	fmt.Fprintf(&b, "   The homeserver pushes transactions to %s.\n\n", m.AppServiceURLOrDefault())

	keys := configChanges(m, reg)
	switch {
	case len(keys) == 0:
		fmt.Fprintf(&b, "2. %s already uses it (matrix.registration); nothing to change there.\n\n", cfgPath)
	default:
		// The file has a matrix section: server_name is in it.
		fmt.Fprintf(&b, "2. Set these keys in the matrix: section of %s:\n\n", cfgPath)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s\n", k)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "3. Start the focus: focus serve --config %s\n", cfgPath)
	_, err := io.WriteString(w, b.String())
	return err
}

// configChanges lists the matrix keys, as YAML lines, the config needs to
// run with the registration at reg.
func configChanges(m config.Matrix, reg string) []string {
	var keys []string
	if !m.Enabled {
		keys = append(keys, "enabled: true")
	}
	if m.HomeserverURL == "" {
		keys = append(keys, `homeserver_url: "http://127.0.0.1:8008"   # your homeserver's client-server API`)
	}
	if m.ASToken != "" {
		// The registration carries the config's inline tokens.
		return keys
	}
	if m.Registration == "" || !sameFile(m.Registration, reg) {
		keys = append(keys, "registration: "+strconv.Quote(reg))
	}
	return keys
}

func sameFile(a, b string) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	return errA == nil && errB == nil && absA == absB
}
