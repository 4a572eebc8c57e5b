package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/matrix"
)

func TestGenerateRegistration(t *testing.T) {
	dir := t.TempDir()
	cfgFile := writeConfig(t, "# my focus\nmatrix:\n  server_name: example.org\n  bot_localpart: sfu\n  appservice_url: \"http://focus.internal:8009\"\n")
	out := filepath.Join(dir, "reg.yaml")
	code, stdout, stderr := runFocus(t, nil, "generate-registration", "--config", cfgFile, "--output", out)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	reg, err := matrix.LoadRegistration(out)
	if err != nil {
		t.Fatal(err)
	}
	token := regexp.MustCompile(`^[A-Za-z0-9]{64}$`)
	if reg.ID != "sfu" || reg.URL != "http://focus.internal:8009" || reg.SenderLocalpart == "" || reg.SenderLocalpart == "sfu" ||
		!token.MatchString(reg.AppToken) || !token.MatchString(reg.ServerToken) || reg.AppToken == reg.ServerToken ||
		reg.RateLimited == nil || *reg.RateLimited || !reg.EphemeralEvents || !reg.SoruEphemeralEvents ||
		len(reg.Namespaces.UserIDs) != 1 || reg.Namespaces.UserIDs[0].Regex != `^@sfu:example\.org$` || !reg.Namespaces.UserIDs[0].Exclusive {
		t.Errorf("registration = %+v", reg)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// The config is left alone; the output says what to set in its
	// existing matrix section.
	if data, _ := os.ReadFile(cfgFile); !strings.HasPrefix(string(data), "# my focus\n") {
		t.Errorf("config file changed:\n%s", data)
	}
	for _, want := range []string{
		"Wrote the appservice registration for @sfu:example.org to " + out,
		`app_service_config_files: ["` + out + `"]`,
		`app_service_api: {config_files: ["` + out + `"]}`,
		"Set these keys in the matrix: section of " + cfgFile,
		"  enabled: true\n",
		"  registration: \"" + out + "\"\n",
		"  homeserver_url: ",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "\nmatrix:\n") {
		t.Errorf("told to add a second matrix: key:\n%s", stdout)
	}

	// Pasted into the config, the keys make a config the focus accepts,
	// whose tokens are the registration's.
	var keys []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "  ") && strings.Contains(l, ": ") && !strings.Contains(l, "(") {
			keys = append(keys, l)
		}
	}
	pasted := writeConfig(t, "matrix:\n  server_name: example.org\n  bot_localpart: sfu\n  appservice_url: \"http://focus.internal:8009\"\n"+strings.Join(keys, "\n")+"\n")
	cfg, err := config.Load(pasted)
	if err != nil {
		t.Fatalf("config with the printed keys: %v", err)
	}
	mc, err := matrix.NewConfig(cfg.Matrix)
	if err != nil || mc.ASToken != reg.AppToken || mc.HSToken != reg.ServerToken {
		t.Errorf("NewConfig = %+v, %v; want the registration's tokens", mc, err)
	}

	// A second run keeps the file.
	code, _, stderr = runFocus(t, nil, "generate-registration", "--config", cfgFile, "--output", out)
	if code != exitUsage || !strings.Contains(stderr, out+" exists; pass --force") {
		t.Errorf("second run: exit %d, stderr %q", code, stderr)
	}
	if again, _ := matrix.LoadRegistration(out); again.AppToken != reg.AppToken {
		t.Error("the existing registration was replaced without --force")
	}
	code, _, stderr = runFocus(t, nil, "generate-registration", "--config", cfgFile, "--output", out, "--force")
	if code != 0 {
		t.Fatalf("--force: exit %d, %s", code, stderr)
	}
	if again, _ := matrix.LoadRegistration(out); again.AppToken == reg.AppToken {
		t.Error("--force did not write new tokens")
	}
}

func TestGenerateRegistrationUsesConfiguredPath(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "registration.yaml")
	cfgFile := writeConfig(t, "matrix:\n  enabled: true\n  homeserver_url: \"http://127.0.0.1:8008\"\n  server_name: localhost\n  registration: \""+out+"\"\n")
	code, stdout, stderr := runFocus(t, []string{"FOCUS_CONFIG=" + cfgFile}, "generate-registration")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if _, err := matrix.LoadRegistration(out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "already uses it (matrix.registration); nothing to change") {
		t.Errorf("stdout:\n%s", stdout)
	}

	// With neither --output nor matrix.registration the file is
	// ./registration.yaml.
	named := writeConfig(t, "matrix:\n  server_name: localhost\n")
	os.Remove(out)
	cmd := focusCmd(t.Context(), nil, "generate-registration", "--config", named)
	cmd.Dir = dir
	outB, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, outB)
	}
	if _, err := matrix.LoadRegistration(filepath.Join(dir, "registration.yaml")); err != nil {
		t.Errorf("no ./registration.yaml: %v", err)
	}
	// A config with no matrix section cannot name the server.
	bare := writeConfig(t, "log:\n  level: info\n")
	code, _, stderr = runFocus(t, nil, "generate-registration", "--config", bare, "-o", filepath.Join(dir, "r2.yaml"))
	if code != exitUsage || !strings.Contains(stderr, "matrix.server_name: must be set") {
		t.Errorf("without server_name: exit %d %s", code, stderr)
	}
}

func TestGenerateRegistrationErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, "matrix:\n  server_name: localhost\n")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no config", []string{"generate-registration"}, exitUsage, "generate-registration needs --config FILE"},
		{"missing config", []string{"generate-registration", "-c", filepath.Join(dir, "nope.yaml")}, exitUsage, "config: cannot read"},
		{"bad config", []string{"generate-registration", "-c", writeConfig(t, "matrix:\n  server_nam: x\n")}, exitUsage, `config: unknown key "matrix.server_nam"`},
		{"invalid config", []string{"generate-registration", "-c", writeConfig(t, "matrix:\n  server_name: \"https://x\"\n")}, exitUsage, "config: matrix.server_name:"},
		{"no server name", []string{"generate-registration", "-c", writeConfig(t, "log: {level: info}\n")}, exitUsage, "config: matrix.server_name: must be set to write a registration"},
		{"stray argument", []string{"generate-registration", "-c", good, "extra"}, exitUsage, `takes no arguments, got "extra"`},
		{"unknown flag", []string{"generate-registration", "--outptu", "x"}, exitUsage, "flag provided but not defined"},
		{"unwritable", []string{"generate-registration", "-c", good, "-o", filepath.Join(dir, "no", "such", "dir", "r.yaml")}, exitRuntime, "write registration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runFocus(t, nil, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, tt.code, tt.want)
			}
			if strings.Contains(out+errOut, "USAGE:") {
				t.Errorf("printed the help page:\n%s%s", out, errOut)
			}
		})
	}
}

func TestGenerateRegistrationHelp(t *testing.T) {
	code, out, _ := runFocus(t, nil, "generate-registration", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--config FILE", "--output FILE", "--force", "Exit codes"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	if _, out, _ := runFocus(t, nil, "--help"); !strings.Contains(out, "generate-registration") {
		t.Errorf("focus --help does not list generate-registration:\n%s", out)
	}
}
