package focustest_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/focus-sfu/focus/config"
	"github.com/focus-sfu/focus/internal/focustest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartStop(t *testing.T) {
	f := focustest.Start(t, func(c *config.Config) { c.Admin.Token = "secret" }, focustest.StopWithin(5*time.Second))
	if f.URL != "http://"+f.Server.Addr().String() {
		t.Errorf("URL = %q, want the main listener %v", f.URL, f.Server.Addr())
	}
	resp, err := http.Get(f.URL + "/api/rooms")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/api/rooms without the token = %d, want 401: mod did not reach the config", resp.StatusCode)
	}

	f.Stop()
	f.Stop() // a second Stop, and the one at cleanup, do nothing
	if _, err := http.Get(f.URL + "/healthz"); err == nil {
		t.Error("HTTP still served after Stop")
	}
	if tail := f.LogTail(1); strings.Contains(tail, "\n") || !strings.Contains(tail, `"stopped"`) {
		t.Errorf("LogTail(1) = %q, want the one stop line", tail)
	}
	if log := f.Log(); !strings.Contains(log, `"url"`) || !strings.Contains(log, `"at"`) {
		t.Errorf("log lacks the stamped start-up line:\n%s", log)
	}
}

func TestLogFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "focus.log")
	t.Setenv(focustest.LogEnv, path)
	var f *focustest.Focus
	t.Run("run", func(t *testing.T) { f = focustest.Start(t, nil) })
	log := f.Log() // complete: the subtest's cleanups have stopped the focus
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", focustest.LogEnv, err)
	}
	if string(got) != log || !strings.Contains(log, `"stopped"`) {
		t.Errorf("%s file = %q, want the whole log %q", focustest.LogEnv, got, log)
	}
}
