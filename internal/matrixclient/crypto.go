//go:build goolm

package matrixclient

// Olm is the Encryptor a client library built on mautrix has: its
// OlmMachine. The package maunium.net/go/mautrix/crypto links an Olm only
// with -tags goolm (or cgo and libolm), hence the tag on this file.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/olm"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Files in an Olm's directory.
const (
	olmKeyFile   = "pickle.key" // encrypts the pickles in olmStateFile
	olmStateFile = "olm.json"   // the account and the Olm sessions
)

// Olm encrypts to-device messages with mautrix's OlmMachine for one
// device, and keeps the device's account and Olm sessions in a directory,
// so that a second Olm on the same directory is the same device with the
// same sessions. Devices' keys and the record of messages already
// decrypted are kept in memory only.
type Olm struct {
	log  zerolog.Logger
	http *http.Client
	dir  string
	key  []byte

	// mu makes the OlmMachine's calls one at a time: the store's save
	// pickles every session, and the machine changes sessions outside the
	// store's lock.
	mu    sync.Mutex
	mach  *crypto.OlmMachine
	store *crypto.MemoryStore
}

var _ Encryptor = (*Olm)(nil)

// olmState is the content of olmStateFile.
type olmState struct {
	Account  string                          `json:"account"` // pickle
	Shared   bool                            `json:"shared"`  // device keys uploaded
	Sessions map[id.SenderKey][]olmStateSess `json:"sessions"`
}

type olmStateSess struct {
	Pickle        string    `json:"pickle"`
	Created       time.Time `json:"created"`
	LastEncrypted time.Time `json:"last_encrypted"`
	LastDecrypted time.Time `json:"last_decrypted"`
}

// NewOlm opens the Olm of user's device with its state in dir (made on
// the first use), and uploads the device's keys and one-time keys to the
// homeserver at hsURL as far as they are not there yet.
func NewOlm(ctx context.Context, hsURL string, user User, dir string, log zerolog.Logger) (*Olm, error) {
	fail := func(err error) (*Olm, error) {
		return nil, fmt.Errorf("matrixclient: olm of %s/%s: %w", user.UserID, user.DeviceID, err)
	}
	mx, err := mautrix.NewClient(hsURL, user.UserID, user.AccessToken)
	if err != nil {
		return fail(err)
	}
	mx.DeviceID = user.DeviceID
	o := &Olm{
		log:  log.With().Str("user", string(user.UserID)).Str("device", string(user.DeviceID)).Logger(),
		http: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second},
		dir:  dir,
	}
	mx.Client = o.http
	defer func() {
		if err != nil {
			o.http.CloseIdleConnections()
		}
	}()
	if err = os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	if o.key, err = loadOrMakeKey(filepath.Join(dir, olmKeyFile)); err != nil {
		return fail(err)
	}
	o.store = crypto.NewMemoryStore(o.save)
	if err = o.load(); err != nil {
		return fail(err)
	}
	o.mach = crypto.NewOlmMachine(mx, &o.log, o.store, noRooms{})
	o.mu.Lock()
	defer o.mu.Unlock()
	if err = o.mach.Load(ctx); err != nil {
		return fail(err)
	}
	// -1 makes mautrix ask the homeserver how many one-time keys it
	// still holds; a new account has none there.
	count := 0
	if o.mach.GetAccount().Shared {
		count = -1
	}
	if err = o.mach.ShareKeys(ctx, count); err != nil {
		return fail(fmt.Errorf("upload keys: %w", err))
	}
	return o, nil
}

// loadOrMakeKey reads a pickle key, or makes one.
func loadOrMakeKey(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err == nil {
		return base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, writeFileAtomic(name, []byte(base64.StdEncoding.EncodeToString(key)+"\n"))
}

// load puts the account and sessions of olmStateFile in the store.
func (o *Olm) load() error {
	data, err := os.ReadFile(filepath.Join(o.dir, olmStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st olmState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%s: %w", olmStateFile, err)
	}
	acc, err := olm.AccountFromPickled([]byte(st.Account), o.key)
	if err != nil {
		return fmt.Errorf("%s: account: %w", olmStateFile, err)
	}
	o.store.Account = &crypto.OlmAccount{Internal: acc, Shared: st.Shared}
	for peer, ss := range st.Sessions {
		list := make(crypto.OlmSessionList, 0, len(ss))
		for _, s := range ss {
			sess, err := olm.SessionFromPickled([]byte(s.Pickle), o.key)
			if err != nil {
				return fmt.Errorf("%s: session with %s: %w", olmStateFile, peer, err)
			}
			list = append(list, &crypto.OlmSession{Internal: sess, ExpirationMixin: crypto.ExpirationMixin{
				TimeMixin: crypto.TimeMixin{CreationTime: s.Created, LastEncryptedTime: s.LastEncrypted, LastDecryptedTime: s.LastDecrypted},
			}})
		}
		o.store.Sessions[peer] = list
	}
	return nil
}

// save is the store's save callback: it writes the account and every
// session. The store calls it with its lock held or (UpdateSession)
// without; either way o.mu is held, by the call into the machine.
func (o *Olm) save() error {
	if o.store.Account == nil {
		return nil
	}
	acc, err := o.store.Account.Internal.Pickle(o.key)
	if err != nil {
		return fmt.Errorf("matrixclient: pickle the Olm account: %w", err)
	}
	st := olmState{Account: string(acc), Shared: o.store.Account.Shared, Sessions: map[id.SenderKey][]olmStateSess{}}
	for peer, list := range o.store.Sessions {
		for _, s := range list {
			p, err := s.Internal.Pickle(o.key)
			if err != nil {
				return fmt.Errorf("matrixclient: pickle an Olm session: %w", err)
			}
			st.Sessions[peer] = append(st.Sessions[peer], olmStateSess{
				Pickle: string(p), Created: s.CreationTime, LastEncrypted: s.LastEncryptedTime, LastDecrypted: s.LastDecryptedTime,
			})
		}
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(o.dir, olmStateFile), data)
}

func writeFileAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// IdentityKeys are the device's Ed25519 and Curve25519 keys.
func (o *Olm) IdentityKeys() (id.Ed25519, id.Curve25519) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mach.GetAccount().Keys()
}

// EncryptToDevice encrypts (typ, content) for one device with Olm,
// claiming one of its one-time keys if there is no session with it yet.
func (o *Olm) EncryptToDevice(ctx context.Context, user id.UserID, device id.DeviceID, typ event.Type, content json.RawMessage) (event.Type, json.RawMessage, error) {
	typ.Class = event.ToDeviceEventType
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
		user: {device: {VeryRaw: content}},
	}}
	o.mu.Lock()
	enc, err := o.mach.EncryptToDevices(ctx, typ, req)
	o.mu.Unlock()
	if err != nil {
		return typ, nil, fmt.Errorf("olm: %w", err)
	}
	c := enc.Messages[user][device]
	if c == nil {
		return typ, nil, fmt.Errorf("olm: no session with %s/%s (no one-time key could be claimed)", user, device)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return typ, nil, fmt.Errorf("olm: %w", err)
	}
	return event.ToDeviceEncrypted, raw, nil
}

// DecryptToDevice decrypts an Olm-encrypted to-device event, parsing its
// content in place. mautrix's checks apply (sender, recipient and keys in
// the plaintext, replays); beyond them, the sender key must belong to a
// device of the sender, known from /keys/query or from the signed device
// keys in the plaintext, which mautrix does not yet demand.
func (o *Olm) DecryptToDevice(ctx context.Context, evt *event.Event) (Decrypted, error) {
	evt.Type.Class = event.ToDeviceEventType
	if evt.Content.Parsed == nil {
		if err := evt.Content.ParseRaw(event.ToDeviceEncrypted); err != nil {
			return Decrypted{}, fmt.Errorf("olm: %w", err)
		}
	}
	// The machine logs why it cannot decrypt, and returns only nil.
	var why bytes.Buffer
	ctx = zerolog.New(&why).Level(zerolog.WarnLevel).WithContext(ctx)
	o.mu.Lock()
	dec := o.mach.HandleEncryptedEvent(ctx, evt)
	o.mu.Unlock()
	switch {
	case dec == nil && why.Len() == 0:
		return Decrypted{}, errors.New("olm: mautrix kept it (a key or dummy event, not a message)")
	case dec == nil:
		return Decrypted{}, fmt.Errorf("olm: mautrix cannot decrypt it: %s", strings.TrimSpace(why.String()))
	case dec.SenderDevice == nil:
		return Decrypted{}, fmt.Errorf("olm: sender key %s is not a known device's of %s", dec.SenderKey, evt.Sender)
	}
	return Decrypted{Type: dec.Type.Type, Content: dec.Content.VeryRaw, SenderDevice: dec.SenderDevice.DeviceID}, nil
}

// Close stops the machine and closes idle connections. Close the Clients
// that use o first.
func (o *Olm) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.mach.Destroy()
	o.http.CloseIdleConnections()
	return nil
}

// noRooms is the machine's view of rooms: none is encrypted. Only
// to-device messages are.
type noRooms struct{}

func (noRooms) IsEncrypted(context.Context, id.RoomID) (bool, error) { return false, nil }
func (noRooms) GetEncryptionEvent(context.Context, id.RoomID) (*event.EncryptionEventContent, error) {
	return nil, nil
}
func (noRooms) GetHistoryVisibility(context.Context, id.RoomID) (*event.HistoryVisibilityEventContent, error) {
	return nil, nil
}
func (noRooms) FindSharedRooms(context.Context, id.UserID) ([]id.RoomID, error) { return nil, nil }
