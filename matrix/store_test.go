package matrix

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestStoreSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	if s.SyncToken(testBot, testDevice) != "" || s.TxnProcessed("1") {
		t.Fatal("a new store is not empty")
	}
	for _, id := range []string{"1", "2", "abc"} {
		if err := s.MarkTxn(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveSyncToken(testBot, testDevice, "s42"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveDevice("http://hs", testBot, testDevice, "tok"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkTxn("late"); err == nil {
		t.Error("MarkTxn after Close succeeded")
	}

	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []string{"1", "2", "abc"} {
		if !s.TxnProcessed(id) {
			t.Errorf("transaction %q forgotten", id)
		}
	}
	if s.TxnProcessed("3") {
		t.Error("transaction 3 remembered, never marked")
	}
	if got := s.SyncToken(testBot, testDevice); got != "s42" {
		t.Errorf("sync token = %q, want s42", got)
	}
	if got := s.SyncToken(testBot, "OTHERDEVICE"); got != "" {
		t.Errorf("another device's sync token = %q, want none", got)
	}
	if tok, ok := s.Device("http://hs", testBot, testDevice); !ok || tok != "tok" {
		t.Errorf("device token = %q %v", tok, ok)
	}
	if _, ok := s.Device("http://other", testBot, testDevice); ok {
		t.Error("device token offered for another homeserver")
	}
	for _, name := range []string{syncFile, txnFile, deviceFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", name, fi.Mode().Perm(), err)
		}
	}
}

func TestStoreTornTransactionLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, txnFile), []byte("1\n2\n3"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.TxnProcessed("2") || s.TxnProcessed("3") {
		t.Error("want 1 and 2, not the torn 3")
	}
	if err := s.MarkTxn("4"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, _ := os.ReadFile(filepath.Join(dir, txnFile))
	if string(data) != "1\n2\n4\n" {
		t.Errorf("log = %q", data)
	}
}

func TestStoreCompactsTransactionLog(t *testing.T) {
	dir := t.TempDir()
	// Start near the compaction point without thousands of fsyncs.
	var b strings.Builder
	for i := range 2*maxTxnIDs - 2 {
		fmt.Fprintf(&b, "t%d\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, txnFile), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"new1", "new2"} {
		if err := s.MarkTxn(id); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	data, _ := os.ReadFile(filepath.Join(dir, txnFile))
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != maxTxnIDs || lines[len(lines)-1] != "new2" || lines[0] != fmt.Sprintf("t%d", maxTxnIDs) {
		t.Fatalf("compacted log has %d lines, %q..%q", len(lines), lines[0], lines[len(lines)-1])
	}
	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.TxnProcessed("t0") || !s.TxnProcessed(fmt.Sprintf("t%d", maxTxnIDs)) || !s.TxnProcessed("new2") {
		t.Error("wrong IDs kept after compaction")
	}
}

func TestStoreRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "a\nb", strings.Repeat("x", maxTxnIDLength+1)} {
		if err := s.MarkTxn(id); err == nil {
			t.Errorf("MarkTxn(%q) succeeded", id)
		}
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, syncFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("OpenStore with a corrupt sync.json = %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := OpenStore(file); err == nil {
		t.Error("OpenStore on a file succeeded")
	}
}

func TestRecentSet(t *testing.T) {
	r := newRecentSet(3)
	for _, s := range []string{"a", "b", "c"} {
		if !r.add(s) {
			t.Fatalf("add(%q) = false", s)
		}
	}
	if r.add("a") {
		t.Error("a added twice")
	}
	r.add("d") // forgets a
	if r.has("a") || !r.has("b") || !r.has("d") {
		t.Errorf("after overflow: a %v b %v d %v", r.has("a"), r.has("b"), r.has("d"))
	}
	if got := r.items(); !reflect.DeepEqual(got, []string{"b", "c", "d"}) {
		t.Errorf("items = %v", got)
	}
}
