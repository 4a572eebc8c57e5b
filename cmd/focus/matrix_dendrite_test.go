package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/internal/dendrite"
)

// TestOperatorFlowWithDendrite does what docs/matrix.md tells an operator
// to: a config from the sample, generate-registration, the registration
// given to Dendrite, the printed keys pasted into the config, focus serve,
// and an invite of the bot, which joins.
func TestOperatorFlowWithDendrite(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	asAddr := ln.Addr().String()
	ln.Close()

	sample, err := os.ReadFile("../../config.sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The sample with its example entries dropped and the Matrix keys an
	// operator edits: the server name, the appservice port, the data dir.
	cfgText := strings.NewReplacer(
		`listen: "127.0.0.1:8080"`, `listen: "127.0.0.1:0"`,
		"udp_port: 7882", "udp_port: 0",
		`  server_name: ""`, `  server_name: "`+dendrite.ServerName+`"`,
		`  appservice_listen: "127.0.0.1:8009"`, `  appservice_listen: "`+asAddr+`"`,
		"  data_dir: ./focus-data", "  data_dir: "+filepath.Join(dir, "data"),
	).Replace(string(sample))
	cfgText = dropExamples(cfgText)
	cfgFile := filepath.Join(dir, "focus.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}

	reg := filepath.Join(dir, "registration.yaml")
	code, stdout, stderr := runFocus(t, nil, "generate-registration", "--config", cfgFile, "--output", reg)
	if code != 0 {
		t.Fatalf("generate-registration: exit %d\n%s", code, stderr)
	}
	hs := dendrite.Start(t, dendrite.Options{AppServiceRegistration: []string{reg}})

	// Paste the printed keys into the matrix section, with the real
	// homeserver URL.
	var keys []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "  ") && strings.Contains(l, ": ") && !strings.Contains(l, "(") {
			if strings.HasPrefix(l, "  homeserver_url:") {
				l = `  homeserver_url: "` + hs.URL + `"`
			}
			keys = append(keys, l)
		}
	}
	if len(keys) != 3 {
		t.Fatalf("printed keys %q, want enabled, homeserver_url and registration", keys)
	}
	var edited []string
	section := ""
	for _, l := range strings.Split(cfgText, "\n") {
		if l != "" && l[0] != ' ' && l[0] != '#' {
			section, _, _ = strings.Cut(l, ":")
		}
		name, _, _ := strings.Cut(strings.TrimSpace(l), ":")
		replaced := false
		for _, k := range keys {
			if kn, _, _ := strings.Cut(strings.TrimSpace(k), ":"); section == "matrix" && strings.HasPrefix(l, "  ") && kn == name {
				edited = append(edited, k)
				replaced = true
			}
		}
		if !replaced {
			edited = append(edited, l)
		}
	}
	if err := os.WriteFile(cfgFile, []byte(strings.Join(edited, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}

	p := startFocus(t, nil, "serve", "--config", cfgFile, "--log-format", "json")
	alice := hs.CreateUser(t, "alice")
	room := hs.CreateRoom(t, alice)
	bot := id.UserID("@focus:" + dendrite.ServerName)
	alice.Invite(t, room, bot)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var m event.MemberEventContent
		err := alice.Client.StateEvent(ctx, room, event.StateMember, string(bot), &m)
		if err == nil && m.Membership == event.MembershipJoin {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the bot did not join: %v %v", m.Membership, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rest := p.stop(t, syscall.SIGTERM)
	for _, m := range append(p.early, rest...) {
		if m["level"] == "error" {
			t.Errorf("error logged: %v", m)
		}
	}
}

// dropExamples removes the sample's example list entries (the WHIP token
// and the ICE server), leaving empty lists.
func dropExamples(sample string) string {
	var out []string
	skip := false
	for _, l := range strings.Split(sample, "\n") {
		trimmed := strings.TrimSpace(l)
		switch {
		case trimmed == "ice_servers:" || trimmed == "tokens:":
			out = append(out, l+" []")
			skip = true
			continue
		case skip && (strings.HasPrefix(trimmed, "- ") || strings.HasPrefix(l, "      ") || strings.HasPrefix(trimmed, "#")):
			continue
		}
		skip = false
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
