package matrix

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"maunium.net/go/mautrix/id"
)

// Files in the data directory.
const (
	syncFile   = "sync.json"        // the /sync position of the bot's device
	txnFile    = "transactions.log" // processed transaction IDs, one per line
	deviceFile = "device.json"      // the bot device's access token
)

// maxTxnIDs is how many processed transaction IDs are remembered. A
// homeserver retries only its latest transaction, so this is generous.
const maxTxnIDs = 10_000

// maxTxnIDLength bounds a transaction ID; the ones homeservers use are
// numbers or short strings.
const maxTxnIDLength = 255

// Store is the Transport's state in the data directory. Everything it is
// told is on disk before its method returns. Safe for concurrent use.
type Store struct {
	dir string

	mu       sync.Mutex
	sync     syncState
	txns     *recentSet
	txnLog   *os.File
	txnLines int
}

// syncState is the content of sync.json. A token belongs to one device; a
// token of another device is not used.
type syncState struct {
	UserID    id.UserID   `json:"user_id"`
	DeviceID  id.DeviceID `json:"device_id"`
	NextBatch string      `json:"next_batch"`
}

// deviceLogin is the content of device.json.
type deviceLogin struct {
	HomeserverURL string      `json:"homeserver_url"`
	UserID        id.UserID   `json:"user_id"`
	DeviceID      id.DeviceID `json:"device_id"`
	AccessToken   string      `json:"access_token"`
}

// OpenStore opens the data directory dir, creating it with mode 0700 if
// needed, and loads what an earlier run left there.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("matrix: data dir: %w", err)
	}
	s := &Store{dir: dir, txns: newRecentSet(maxTxnIDs)}
	if err := readJSON(s.path(syncFile), &s.sync); err != nil {
		return nil, err
	}
	if err := s.loadTxns(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

// loadTxns reads the transaction log and opens it for appending. A last
// line without its newline was cut short by a crash while it was written;
// its transaction was never acknowledged, so it is dropped.
func (s *Store) loadTxns() error {
	name := s.path(txnFile)
	data, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("matrix: data dir: %w", err)
	}
	lines := strings.Split(string(data), "\n")
	torn := lines[len(lines)-1] != ""
	lines = lines[:len(lines)-1]
	for _, l := range lines {
		if l != "" {
			s.txns.add(l)
		}
	}
	s.txnLines = len(lines)
	if torn {
		// Rewrite without the torn line, so the next append starts clean.
		return s.compactTxns()
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("matrix: data dir: %w", err)
	}
	s.txnLog = f
	return nil
}

// SyncToken returns the saved /sync next_batch token of device, or "".
func (s *Store) SyncToken(user id.UserID, device id.DeviceID) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sync.UserID != user || s.sync.DeviceID != device {
		return ""
	}
	return s.sync.NextBatch
}

// SaveSyncToken records the position the next /sync of device starts from.
func (s *Store) SaveSyncToken(user id.UserID, device id.DeviceID, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := syncState{UserID: user, DeviceID: device, NextBatch: token}
	if st == s.sync {
		return nil
	}
	if err := writeJSON(s.path(syncFile), st); err != nil {
		return err
	}
	s.sync = st
	return nil
}

// TxnProcessed reports whether the transaction ID was recorded.
func (s *Store) TxnProcessed(txnID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txns.has(txnID)
}

// MarkTxn records a transaction ID as processed, durably.
func (s *Store) MarkTxn(txnID string) error {
	if !validTxnID(txnID) {
		return fmt.Errorf("matrix: transaction ID %q: not storable", txnID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txns.has(txnID) {
		return nil
	}
	if s.txnLog == nil {
		return errors.New("matrix: store is closed")
	}
	if _, err := s.txnLog.WriteString(txnID + "\n"); err != nil {
		return fmt.Errorf("matrix: record transaction: %w", err)
	}
	if err := s.txnLog.Sync(); err != nil {
		return fmt.Errorf("matrix: record transaction: %w", err)
	}
	s.txns.add(txnID)
	s.txnLines++
	if s.txnLines >= 2*maxTxnIDs {
		return s.compactTxns()
	}
	return nil
}

// compactTxns rewrites the log with only the IDs still remembered, by
// atomic rename, and reopens it for appending. Called with s.mu held.
func (s *Store) compactTxns() error {
	var b strings.Builder
	ids := s.txns.items()
	for _, id := range ids {
		b.WriteString(id)
		b.WriteByte('\n')
	}
	name := s.path(txnFile)
	if err := writeFileAtomic(name, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if s.txnLog != nil {
		s.txnLog.Close()
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.txnLog = nil
		return fmt.Errorf("matrix: data dir: %w", err)
	}
	s.txnLog = f
	s.txnLines = len(ids)
	return nil
}

// validTxnID accepts what fits on one line of the log.
func validTxnID(txnID string) bool {
	return txnID != "" && len(txnID) <= maxTxnIDLength &&
		!strings.ContainsFunc(txnID, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// Device returns the saved device login, if it is for this homeserver,
// user and device.
func (s *Store) Device(homeserverURL string, user id.UserID, device id.DeviceID) (accessToken string, ok bool) {
	var d deviceLogin
	if err := readJSON(s.path(deviceFile), &d); err != nil {
		return "", false
	}
	if d.HomeserverURL != homeserverURL || d.UserID != user || d.DeviceID != device || d.AccessToken == "" {
		return "", false
	}
	return d.AccessToken, true
}

// SaveDevice records the access token of the bot's device.
func (s *Store) SaveDevice(homeserverURL string, user id.UserID, device id.DeviceID, accessToken string) error {
	return writeJSON(s.path(deviceFile), deviceLogin{
		HomeserverURL: homeserverURL, UserID: user, DeviceID: device, AccessToken: accessToken,
	})
}

// Close closes the transaction log. Later MarkTxn calls fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txnLog == nil {
		return nil
	}
	err := s.txnLog.Close()
	s.txnLog = nil
	return err
}

// readJSON decodes the file at name into v; a missing file leaves v alone.
func readJSON(name string, v any) error {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("matrix: data dir: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("matrix: data dir: %s is corrupt (%v); delete it to start afresh", name, err)
	}
	return nil
}

func writeJSON(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("matrix: %s: %w", name, err)
	}
	return writeFileAtomic(name, append(data, '\n'), 0o600)
}

// recentSet remembers the last max strings added, forgetting the oldest
// first. Not safe for concurrent use.
type recentSet struct {
	ring []string
	next int
	full bool
	set  map[string]struct{}
}

func newRecentSet(max int) *recentSet {
	return &recentSet{ring: make([]string, max), set: make(map[string]struct{}, max)}
}

func (r *recentSet) has(s string) bool {
	_, ok := r.set[s]
	return ok
}

// add inserts s, reporting false if it was already there.
func (r *recentSet) add(s string) bool {
	if r.has(s) {
		return false
	}
	if r.full {
		delete(r.set, r.ring[r.next])
	}
	r.ring[r.next] = s
	r.set[s] = struct{}{}
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
	return true
}

// items returns the strings in the order they were added.
func (r *recentSet) items() []string {
	if !r.full {
		return append([]string(nil), r.ring[:r.next]...)
	}
	return append(append([]string(nil), r.ring[r.next:]...), r.ring[:r.next]...)
}
