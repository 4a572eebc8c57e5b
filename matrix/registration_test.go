package matrix

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/focus-sfu/focus/config"
)

func matrixSection(serverName string) config.Matrix {
	m := config.Default().Matrix
	m.ServerName = serverName
	return m
}

func TestNewRegistration(t *testing.T) {
	m := matrixSection("example.org")
	reg, err := NewRegistration(m)
	if err != nil {
		t.Fatal(err)
	}
	data, err := MarshalRegistration(reg)
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"id":                                 "focus",
		"url":                                "http://127.0.0.1:8009",
		"rate_limited":                       false,
		"receive_ephemeral":                  true,
		"de.sorunome.msc2409.push_ephemeral": true,
	} {
		if file[key] != want {
			t.Errorf("%s = %v, want %v", key, file[key], want)
		}
	}
	if sender, _ := file["sender_localpart"].(string); !regexp.MustCompile(`^[a-z0-9]{32}$`).MatchString(sender) {
		t.Errorf("sender_localpart = %q, want 32 random lower-case letters and digits (not the bot: Synapse refuses /sync to the sender)", sender)
	}
	tokenRE := regexp.MustCompile(`^[A-Za-z0-9]{64}$`)
	as, hs := file["as_token"].(string), file["hs_token"].(string)
	if !tokenRE.MatchString(as) || !tokenRE.MatchString(hs) || as == hs {
		t.Errorf("tokens %q %q: want two different 64-character random tokens", as, hs)
	}
	users := file["namespaces"].(map[string]any)["users"].([]any)
	ns := users[0].(map[string]any)
	if len(users) != 1 || ns["exclusive"] != true || ns["regex"] != `^@focus:example\.org$` {
		t.Errorf("namespaces.users = %v", users)
	}
	re := regexp.MustCompile(ns["regex"].(string))
	for user, want := range map[string]bool{"@focus:example.org": true, "@focus:exampleXorg": false, "@focus2:example.org": false, "@alice:example.org": false} {
		if re.MatchString(user) != want {
			t.Errorf("namespace matches %s = %v", user, !want)
		}
	}
	if !strings.HasPrefix(string(data), "# Appservice registration") {
		t.Errorf("no header comment:\n%s", data)
	}

	again, _ := NewRegistration(m)
	if again.AppToken == reg.AppToken {
		t.Error("two registrations share a token")
	}
	back, err := ParseRegistration(data)
	if err != nil || back.AppToken != reg.AppToken || back.ServerToken != reg.ServerToken {
		t.Errorf("round trip: %v %+v", err, back)
	}
}

func TestNewRegistrationOptions(t *testing.T) {
	m := matrixSection("localhost:8448")
	m.BotLocalpart = "sfu.bot"
	m.AppServiceURL = "https://focus.internal/as"
	m.ASToken, m.HSToken = "inline-as", "inline-hs"
	reg, err := NewRegistration(m)
	if err != nil {
		t.Fatal(err)
	}
	if reg.URL != "https://focus.internal/as" || reg.AppToken != "inline-as" || reg.ServerToken != "inline-hs" ||
		reg.SenderLocalpart == "sfu.bot" || reg.Namespaces.UserIDs[0].Regex != `^@sfu\.bot:localhost:8448$` {
		t.Errorf("registration = %+v", reg)
	}
	_, err = NewRegistration(matrixSection(""))
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "matrix.server_name" {
		t.Errorf("without a server name: %v", err)
	}
}

func TestWriteRegistration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registration.yaml")
	reg, _ := NewRegistration(matrixSection("example.org"))
	if err := WriteRegistration(path, reg, false); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	other, _ := NewRegistration(matrixSection("example.org"))
	if err := WriteRegistration(path, other, false); !errors.Is(err, ErrRegistrationExists) {
		t.Errorf("second write = %v, want ErrRegistrationExists", err)
	}
	if got, _ := LoadRegistration(path); got.AppToken != reg.AppToken {
		t.Error("the existing file was changed")
	}
	if err := WriteRegistration(path, other, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadRegistration(path); got.AppToken != other.AppToken {
		t.Error("overwrite did not replace the file")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after overwrite %v, want 0600", fi.Mode().Perm())
	}
}

func TestLoadRegistrationErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	tests := []struct{ path, want string }{
		{filepath.Join(dir, "missing.yaml"), "missing.yaml: no such file or directory"},
		{write("bad.yaml", "id: [\n"), "not a registration file"},
		{write("noas.yaml", "hs_token: h\nsender_localpart: focus\n"), "has no as_token"},
		{write("nohs.yaml", "as_token: a\nsender_localpart: focus\n"), "has no hs_token"},
		{write("nosender.yaml", "as_token: a\nhs_token: h\n"), "has no sender_localpart"},
		{write("big.yaml", "# "+strings.Repeat("x", maxRegistrationSize)), "larger than"},
	}
	for _, tt := range tests {
		if _, err := LoadRegistration(tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadRegistration(%s) = %v, want %q", filepath.Base(tt.path), err, tt.want)
		}
	}
}

func TestNewConfigReadsRegistration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registration.yaml")
	m := matrixSection("example.org")
	reg, _ := NewRegistration(m)
	if err := WriteRegistration(path, reg, false); err != nil {
		t.Fatal(err)
	}
	m.Enabled = true
	m.HomeserverURL = "http://127.0.0.1:8008"
	m.Registration = path
	m.AllowedUsers = []string{"@*:example.org"}
	c, err := NewConfig(m)
	if err != nil {
		t.Fatal(err)
	}
	if c.ASToken != reg.AppToken || c.HSToken != reg.ServerToken || c.UserID() != "@focus:example.org" ||
		c.DeviceID != "FOCUS" || c.Policy.Users[0] != "@*:example.org" || !c.AutoJoin || c.MaxConferences != 100 {
		t.Errorf("config = %+v", c)
	}

	m.BotLocalpart = "other"
	_, err = NewConfig(m)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "matrix.bot_localpart" || !strings.Contains(err.Error(), "@other:example.org is not in the user namespace") {
		t.Errorf("a bot outside the namespace: %v", err)
	}
	// A hand-written registration whose sender is the bot is accepted.
	handPath := filepath.Join(t.TempDir(), "hand.yaml")
	os.WriteFile(handPath, []byte("as_token: a\nhs_token: h\nsender_localpart: other\n"), 0o600)
	m.Registration = handPath
	if _, err := NewConfig(m); err != nil {
		t.Errorf("sender as the bot: %v", err)
	}
	m.BotLocalpart = "focus"
	m.Registration = filepath.Join(t.TempDir(), "nope.yaml")
	if _, err = NewConfig(m); !errors.As(err, &ce) || ce.Key != "matrix.registration" ||
		!strings.HasPrefix(err.Error(), "config: matrix.registration: cannot read ") {
		t.Errorf("missing registration: %v", err)
	}
}
