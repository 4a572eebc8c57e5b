package matrix

// Olm-encrypted to-device messages for the bot's device.
//
// This is built on mautrix's pure-Go Olm (crypto/goolm) directly, not on
// its OlmMachine. The package maunium.net/go/mautrix/crypto picks its Olm
// by build tag: without -tags goolm it links libolm through cgo, so every
// go build, test and run of the focus would need the tag. The goolm
// packages need none. What the focus needs of Olm is small (one device,
// to-device messages, no Megolm, no cross-signing), and is done here
// following the spec's m.olm.v1.curve25519-aes-sha2 rules. The tests check
// it against OlmMachine (crypto_dendrite_test.go, -tags goolm).

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/crypto/goolm/account"
	"maunium.net/go/mautrix/crypto/goolm/session"
	"maunium.net/go/mautrix/crypto/signatures"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Files under the data directory.
const (
	olmDir         = "olm"
	olmKeyFile     = "pickle.key"   // the key the pickles are encrypted with
	olmAccountFile = "account.json" // the device's Olm account
	olmSessionDir  = "sessions"     // one file per peer identity key
)

const (
	// otkTarget is how many one-time keys the homeserver should hold: half
	// of what an account keeps, so that keys still unclaimed on the server
	// are never discarded by the account.
	otkTarget = account.MaxOneTimeKeys / 2
	// otkCheckInterval spaces the checks of the server's own count; the
	// counts /sync reports can be older than the last upload.
	otkCheckInterval = 10 * time.Second
	// fallbackRotateInterval is the least time between two new fallback
	// keys. A homeserver that does not store fallback keys (Dendrite)
	// reports one missing after every upload.
	fallbackRotateInterval = time.Hour
	// deviceRefetchInterval is the least time between two /keys/query for
	// one user when a message names a key the cached list lacks.
	deviceRefetchInterval = time.Second
	// keyRequestWindow bounds one /keys request.
	keyRequestWindow = 10 * time.Second

	maxSessionsPerPeer = 5      // Olm sessions kept per peer identity key
	maxPeers           = 10_000 // peer identity keys with sessions on disk
	maxCachedUsers     = 10_000 // users whose device keys are cached
	maxEncryptedWriter = 10_000 // devices remembered as writing encrypted
	maxOlmBody         = 256 << 10
)

// Olm is the Crypto of the bot's device: it decrypts the Olm-encrypted
// to-device messages sent to it, encrypts replies to devices that wrote
// encrypted, and keeps the device's keys published. Its account and
// sessions live in the data directory, so the device's identity survives
// restarts. Build it with NewOlm, put it in Config.Crypto, and Attach it
// to the Transport.
type Olm struct {
	log    zerolog.Logger
	user   id.UserID
	device id.DeviceID
	dir    string
	key    []byte // pickle key
	now    func() time.Time

	// mu guards the account, the session files and the state below. No
	// network call is made with it held.
	mu       sync.Mutex
	account  *account.Account
	state    olmAccountState
	peers    map[string]time.Time // session file → last write
	writers  *recentSet           // user\x00device that wrote encrypted
	signing  id.Ed25519
	identity id.Curve25519

	devMu   sync.Mutex
	devices map[id.UserID]*userDevices

	// uploadMu makes key uploads one at a time.
	uploadMu     sync.Mutex
	lastOTKCheck time.Time

	pendMu  sync.Mutex
	pendOTK bool
	pendFB  bool
	kick    chan struct{}

	client   func(context.Context) (*mautrix.Client, error)
	attached bool
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// olmAccountState is the content of account.json.
type olmAccountState struct {
	UserID   id.UserID   `json:"user_id"`
	DeviceID id.DeviceID `json:"device_id"`
	Account  string      `json:"account"` // goolm pickle
	// FallbackPublished is when the current fallback key was uploaded
	// (Unix ms).
	FallbackPublished int64 `json:"fallback_published,omitempty"`
}

// peerSessions is the content of a session file: the Olm sessions with
// one peer identity key.
type peerSessions struct {
	PeerKey  id.Curve25519 `json:"peer_key"`
	Sessions []olmSession  `json:"sessions"`
}

type olmSession struct {
	Pickle       string `json:"pickle"`
	Created      int64  `json:"created"`                 // Unix ms
	LastReceived int64  `json:"last_received,omitempty"` // Unix ms
}

// deviceKeys are the verified keys of one device.
type deviceKeys struct {
	user     id.UserID
	device   id.DeviceID
	signing  id.Ed25519
	identity id.Curve25519
}

type userDevices struct {
	devices map[id.DeviceID]deviceKeys
	fetched time.Time
}

// NewOlm loads the bot device's Olm account from cfg.DataDir, creating it
// (and the pickle key) on the first start. Nothing is sent until Attach.
func NewOlm(cfg Config, log zerolog.Logger) (*Olm, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	o := &Olm{
		log:     log,
		user:    cfg.UserID(),
		device:  cfg.DeviceID,
		dir:     filepath.Join(cfg.DataDir, olmDir),
		now:     time.Now,
		peers:   make(map[string]time.Time),
		writers: newRecentSet(maxEncryptedWriter),
		devices: make(map[id.UserID]*userDevices),
		kick:    make(chan struct{}, 1),
	}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	if err := os.MkdirAll(filepath.Join(o.dir, olmSessionDir), 0o700); err != nil {
		return nil, fmt.Errorf("matrix: data dir: %w", err)
	}
	var err error
	if o.key, err = loadPickleKey(filepath.Join(o.dir, olmKeyFile)); err != nil {
		return nil, err
	}
	if err := o.loadAccount(); err != nil {
		return nil, err
	}
	if err := o.loadPeers(); err != nil {
		return nil, err
	}
	return o, nil
}

// loadPickleKey reads the pickle key, or makes one on the first start.
func loadPickleKey(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err == nil {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil || len(key) < 32 {
			return nil, fmt.Errorf("matrix: data dir: %s is corrupt; the Olm account cannot be read without it", name)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("matrix: data dir: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("matrix: pickle key: %w", err)
	}
	if err := writeFileAtomic(name, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// loadAccount reads account.json, or creates the account. An account of
// another user or device is replaced: the device is a new one.
func (o *Olm) loadAccount() error {
	name := filepath.Join(o.dir, olmAccountFile)
	var st olmAccountState
	if err := readJSON(name, &st); err != nil {
		return err
	}
	if st.Account != "" && (st.UserID != o.user || st.DeviceID != o.device) {
		o.log.Warn().Str("user", string(st.UserID)).Str("device", string(st.DeviceID)).
			Msg("matrix: the Olm account in the data dir is another device's; making a new one for this device")
		if err := os.RemoveAll(filepath.Join(o.dir, olmSessionDir)); err != nil {
			return fmt.Errorf("matrix: data dir: %w", err)
		}
		if err := os.MkdirAll(filepath.Join(o.dir, olmSessionDir), 0o700); err != nil {
			return fmt.Errorf("matrix: data dir: %w", err)
		}
		st = olmAccountState{}
	}
	if st.Account != "" {
		acc, err := account.AccountFromPickled([]byte(st.Account), o.key)
		if err != nil {
			return fmt.Errorf("matrix: data dir: %s cannot be read with %s (%v); delete the %s directory to give the device a new identity", name, olmKeyFile, err, olmDir)
		}
		o.account, o.state = acc, st
	} else {
		acc, err := account.NewAccount()
		if err != nil {
			return fmt.Errorf("matrix: new Olm account: %w", err)
		}
		o.account = acc
		o.state = olmAccountState{UserID: o.user, DeviceID: o.device}
		if err := o.saveAccount(); err != nil {
			return err
		}
	}
	var err error
	o.signing, o.identity, err = o.account.IdentityKeys()
	if err != nil {
		return fmt.Errorf("matrix: Olm identity keys: %w", err)
	}
	return nil
}

// saveAccount writes the account. Called with o.mu held (or before the
// Olm is shared).
func (o *Olm) saveAccount() error {
	pickled, err := o.account.Pickle(o.key)
	if err != nil {
		return fmt.Errorf("matrix: pickle the Olm account: %w", err)
	}
	o.state.Account = string(pickled)
	return writeJSON(filepath.Join(o.dir, olmAccountFile), o.state)
}

// loadPeers indexes the session files, for the bound on their number.
func (o *Olm) loadPeers() error {
	entries, err := os.ReadDir(filepath.Join(o.dir, olmSessionDir))
	if err != nil {
		return fmt.Errorf("matrix: data dir: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		o.peers[e.Name()] = info.ModTime()
	}
	return nil
}

// IdentityKeys are the device's Ed25519 signing key and Curve25519
// identity key, as published.
func (o *Olm) IdentityKeys() (id.Ed25519, id.Curve25519) { return o.signing, o.identity }

// Attach lets the Olm use t's logged-in device: once the device is logged
// in, it publishes the device's keys, then keeps its one-time and fallback
// keys topped up from the counts t reports. Call it once, before t.Run.
func (o *Olm) Attach(t *Transport) {
	o.attach(t.deviceClient, t.loggedIn, t.retry)
}

func (o *Olm) attach(client func(context.Context) (*mautrix.Client, error), loggedIn <-chan struct{},
	retry func(context.Context, string, func(context.Context) error) bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.attached {
		return
	}
	o.attached = true
	o.client = client
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		select {
		case <-loggedIn:
		case <-o.ctx.Done():
			return
		}
		if !retry(o.ctx, "publish the encryption keys of the bot device "+string(o.device), o.publishKeys) {
			return
		}
		for {
			select {
			case <-o.ctx.Done():
				return
			case <-o.kick:
			}
			o.pendMu.Lock()
			otk, fb := o.pendOTK, o.pendFB
			o.pendOTK, o.pendFB = false, false
			o.pendMu.Unlock()
			if err := o.replenish(o.ctx, otk, fb); err != nil && o.ctx.Err() == nil {
				o.log.Warn().Err(err).Msg("matrix: cannot replenish the bot device's one-time keys; trying again at the next count")
			}
		}
	}()
}

// Close stops publishing keys. Call it after the Transport's Run has
// returned.
func (o *Olm) Close() error {
	o.cancel()
	o.wg.Wait()
	return nil
}

func (o *Olm) deviceClient(ctx context.Context) (*mautrix.Client, error) {
	o.mu.Lock()
	client := o.client
	o.mu.Unlock()
	if client == nil {
		return nil, errors.New("the Olm is not attached to a Transport")
	}
	return client(ctx)
}

// KeyCounts asks for new one-time keys when the homeserver holds fewer
// than otkTarget, and for a new fallback key when the homeserver reports
// none unused. The upload happens in the background.
func (o *Olm) KeyCounts(_ context.Context, otk mautrix.OTKCount, unusedFallback []id.KeyAlgorithm) {
	if (otk.UserID != "" && otk.UserID != o.user) || (otk.DeviceID != "" && otk.DeviceID != o.device) {
		return
	}
	needOTK := otk.SignedCurve25519 < otkTarget
	needFB := unusedFallback != nil && !slices.Contains(unusedFallback, id.KeyAlgorithmSignedCurve25519)
	if !needOTK && !needFB {
		return
	}
	o.pendMu.Lock()
	o.pendOTK = o.pendOTK || needOTK
	o.pendFB = o.pendFB || needFB
	o.pendMu.Unlock()
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// DeviceLists forgets the cached device keys of users whose devices
// changed or who no longer share a room with the bot.
func (o *Olm) DeviceLists(_ context.Context, lists mautrix.DeviceLists) {
	o.devMu.Lock()
	defer o.devMu.Unlock()
	for _, u := range lists.Changed {
		delete(o.devices, u)
	}
	for _, u := range lists.Left {
		delete(o.devices, u)
	}
}

// keysUpload is the body of /keys/upload. mautrix's ReqUploadKeys has no
// fallback_keys.
type keysUpload struct {
	DeviceKeys   map[string]any                  `json:"device_keys,omitempty"`
	OneTimeKeys  map[id.KeyID]mautrix.OneTimeKey `json:"one_time_keys,omitempty"`
	FallbackKeys map[id.KeyID]mautrix.OneTimeKey `json:"fallback_keys,omitempty"`
}

// upload sends one /keys/upload and returns the server's count of the
// device's signed_curve25519 one-time keys.
func (o *Olm) upload(ctx context.Context, cli *mautrix.Client, req *keysUpload) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, keyRequestWindow)
	defer cancel()
	var resp mautrix.RespUploadKeys
	if _, err := cli.MakeRequest(cctx, "POST", cli.BuildClientURL("v3", "keys", "upload"), req, &resp); err != nil {
		return 0, fmt.Errorf("upload keys: %w", err)
	}
	return resp.OneTimeKeyCounts.SignedCurve25519, nil
}

// publishKeys makes the homeserver hold this device's keys: device keys
// (again, if it holds others, after claiming away the one-time keys of
// the old identity), one-time keys up to otkTarget, and a fallback key.
func (o *Olm) publishKeys(ctx context.Context) error {
	cli, err := o.deviceClient(ctx)
	if err != nil {
		return err
	}
	published, err := o.queryDevices(ctx, cli, o.user)
	if err != nil {
		return err
	}
	o.uploadMu.Lock()
	defer o.uploadMu.Unlock()
	var req keysUpload
	old, ok := published[o.device]
	if !ok || old.signing != o.signing || old.identity != o.identity {
		if req.DeviceKeys, err = o.signedDeviceKeys(); err != nil {
			return err
		}
	}
	count, err := o.upload(ctx, cli, &req)
	if err != nil {
		return err
	}
	if ok && req.DeviceKeys != nil {
		// One-time keys of the identity the homeserver held before (a data
		// dir started afresh) would start sessions this account cannot
		// decrypt. Claim them away.
		o.log.Warn().Str("device", string(o.device)).Msg("matrix: the homeserver held other keys for the bot device; replacing them")
		if count, err = o.drainOneTimeKeys(ctx, cli, count); err != nil {
			return err
		}
	}
	o.lastOTKCheck = o.now()
	o.mu.Lock()
	noFallback := o.account.NumFallbackKeys == 0
	o.mu.Unlock()
	if err := o.share(ctx, cli, count, noFallback); err != nil {
		return err
	}
	o.log.Info().Str("device", string(o.device)).Str("ed25519", string(o.signing)).Str("curve25519", string(o.identity)).
		Msg("matrix: published the bot device's encryption keys")
	return nil
}

// drainOneTimeKeys claims the device's own one-time keys until the
// homeserver holds none, and returns the count left.
func (o *Olm) drainOneTimeKeys(ctx context.Context, cli *mautrix.Client, count int) (int, error) {
	for i := 0; count > 0 && i < 2*account.MaxOneTimeKeys; i++ {
		cctx, cancel := context.WithTimeout(ctx, keyRequestWindow)
		_, err := cli.ClaimKeys(cctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{
			o.user: {o.device: id.KeyAlgorithmSignedCurve25519},
		}})
		cancel()
		if err != nil {
			return 0, fmt.Errorf("claim stale one-time keys: %w", err)
		}
		if count, err = o.upload(ctx, cli, &keysUpload{}); err != nil {
			return 0, err
		}
	}
	return count, nil
}

// replenish uploads one-time keys when the homeserver's own count is below
// otkTarget, and a fallback key when one is missing.
func (o *Olm) replenish(ctx context.Context, needOTK, needFB bool) error {
	cli, err := o.deviceClient(ctx)
	if err != nil {
		return err
	}
	o.uploadMu.Lock()
	defer o.uploadMu.Unlock()
	now := o.now()
	count := otkTarget
	if needOTK && now.Sub(o.lastOTKCheck) >= otkCheckInterval {
		// An empty upload answers with the count as it is now.
		if count, err = o.upload(ctx, cli, &keysUpload{}); err != nil {
			return err
		}
		o.lastOTKCheck = now
	}
	rotate := false
	if needFB {
		o.mu.Lock()
		unpublished := len(o.account.FallbackKeyUnpublished()) > 0
		rotate = !unpublished && now.Sub(time.UnixMilli(o.state.FallbackPublished)) >= fallbackRotateInterval
		o.mu.Unlock()
		needFB = unpublished || rotate
	}
	if count >= otkTarget && !needFB {
		return nil
	}
	return o.share(ctx, cli, count, rotate)
}

// share tops the server's one-time keys up from count to otkTarget,
// makes a new fallback key if newFallback, and uploads every key not yet
// published. Called with uploadMu held.
func (o *Olm) share(ctx context.Context, cli *mautrix.Client, count int, newFallback bool) error {
	o.mu.Lock()
	if n := otkTarget - count; n > 0 {
		if err := o.account.GenOneTimeKeys(uint(n)); err != nil {
			o.mu.Unlock()
			return fmt.Errorf("generate one-time keys: %w", err)
		}
	}
	if newFallback {
		if err := o.account.GenFallbackKey(); err != nil {
			o.mu.Unlock()
			return fmt.Errorf("generate a fallback key: %w", err)
		}
	}
	otks, err := o.account.OneTimeKeys()
	if err != nil {
		o.mu.Unlock()
		return fmt.Errorf("one-time keys: %w", err)
	}
	req := keysUpload{
		OneTimeKeys:  o.signKeys(otks, false),
		FallbackKeys: o.signKeys(o.account.FallbackKeyUnpublished(), true),
	}
	// Saved before the upload: keys the server may hold must not be lost
	// in a crash.
	err = o.saveAccount()
	o.mu.Unlock()
	if err != nil {
		return err
	}
	if len(req.OneTimeKeys) == 0 && len(req.FallbackKeys) == 0 {
		return nil
	}
	if _, err := o.upload(ctx, cli, &req); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.account.MarkKeysAsPublished()
	if len(req.FallbackKeys) > 0 {
		o.state.FallbackPublished = o.now().UnixMilli()
	}
	o.log.Debug().Int("one_time_keys", len(req.OneTimeKeys)).Int("fallback_keys", len(req.FallbackKeys)).
		Msg("matrix: uploaded keys of the bot device")
	return o.saveAccount()
}

// signedDeviceKeys is the device_keys object of this device.
func (o *Olm) signedDeviceKeys() (map[string]any, error) {
	dk := map[string]any{
		"user_id":    o.user,
		"device_id":  o.device,
		"algorithms": []id.Algorithm{id.AlgorithmOlmV1},
		"keys": map[id.DeviceKeyID]string{
			id.NewDeviceKeyID(id.KeyAlgorithmCurve25519, o.device): string(o.identity),
			id.NewDeviceKeyID(id.KeyAlgorithmEd25519, o.device):    string(o.signing),
		},
	}
	sig, err := o.sign(dk)
	if err != nil {
		return nil, err
	}
	dk["signatures"] = signatures.NewSingleSignature(o.user, id.KeyAlgorithmEd25519, string(o.device), sig)
	return dk, nil
}

// signKeys turns curve25519 keys by ID into signed_curve25519 keys.
// Called with o.mu held.
func (o *Olm) signKeys(keys map[string]id.Curve25519, fallback bool) map[id.KeyID]mautrix.OneTimeKey {
	out := make(map[id.KeyID]mautrix.OneTimeKey, len(keys))
	for keyID, k := range keys {
		otk := mautrix.OneTimeKey{Key: k, Fallback: fallback, IsSigned: true}
		sig, err := o.sign(&otk)
		if err != nil {
			continue // cannot happen for this struct
		}
		otk.Signatures = signatures.NewSingleSignature(o.user, id.KeyAlgorithmEd25519, string(o.device), sig)
		out[id.NewKeyID(id.KeyAlgorithmSignedCurve25519, keyID)] = otk
	}
	return out
}

// sign signs the canonical JSON of v (which has no signatures or
// unsigned yet) with the device's Ed25519 key.
func (o *Olm) sign(v any) (string, error) {
	data, err := canonicaljson.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	sig, err := o.account.Sign(data)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return string(sig), nil
}

// queryDevices fetches the device keys of user and keeps those whose
// self-signature holds.
func (o *Olm) queryDevices(ctx context.Context, cli *mautrix.Client, user id.UserID) (map[id.DeviceID]deviceKeys, error) {
	cctx, cancel := context.WithTimeout(ctx, keyRequestWindow)
	defer cancel()
	var resp struct {
		DeviceKeys map[id.UserID]map[id.DeviceID]json.RawMessage `json:"device_keys"`
	}
	req := mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{user: mautrix.DeviceIDList{}}}
	if _, err := cli.MakeRequest(cctx, "POST", cli.BuildClientURL("v3", "keys", "query"), &req, &resp); err != nil {
		return nil, fmt.Errorf("query the device keys of %s: %w", user, err)
	}
	out := make(map[id.DeviceID]deviceKeys)
	for device, raw := range resp.DeviceKeys[user] {
		dk, err := verifyDeviceKeys(raw, user, device)
		if err != nil {
			o.log.Debug().Err(err).Str("user", string(user)).Str("device", string(device)).Msg("matrix: ignoring device keys")
			continue
		}
		out[device] = dk
	}
	return out, nil
}

// verifyDeviceKeys reads a device_keys object and checks that it names
// user and device and is signed by its own Ed25519 key.
func verifyDeviceKeys(raw json.RawMessage, user id.UserID, device id.DeviceID) (deviceKeys, error) {
	var dk struct {
		UserID   id.UserID      `json:"user_id"`
		DeviceID id.DeviceID    `json:"device_id"`
		Keys     mautrix.KeyMap `json:"keys"`
	}
	if err := json.Unmarshal(raw, &dk); err != nil {
		return deviceKeys{}, fmt.Errorf("device keys: %w", err)
	}
	if dk.UserID != user || dk.DeviceID != device {
		return deviceKeys{}, fmt.Errorf("device keys name %s/%s, not %s/%s", dk.UserID, dk.DeviceID, user, device)
	}
	keys := deviceKeys{user: user, device: device, signing: dk.Keys.GetEd25519(device), identity: dk.Keys.GetCurve25519(device)}
	if keys.signing == "" || keys.identity == "" {
		return deviceKeys{}, errors.New("device keys lack ed25519 or curve25519")
	}
	ok, err := signatures.VerifySignatureJSON(raw, user, string(device), keys.signing)
	if err != nil || !ok {
		return deviceKeys{}, fmt.Errorf("device keys: bad self-signature (%v)", err)
	}
	return keys, nil
}

// devicesOf returns the cached device keys of user, fetching them when
// they are not cached, or when refresh and the cache is older than
// deviceRefetchInterval.
func (o *Olm) devicesOf(ctx context.Context, user id.UserID, refresh bool) (map[id.DeviceID]deviceKeys, error) {
	o.devMu.Lock()
	cached := o.devices[user]
	o.devMu.Unlock()
	if cached != nil && (!refresh || o.now().Sub(cached.fetched) < deviceRefetchInterval) {
		return cached.devices, nil
	}
	cli, err := o.deviceClient(ctx)
	if err != nil {
		return nil, err
	}
	devices, err := o.queryDevices(ctx, cli, user)
	if err != nil {
		return nil, err
	}
	o.devMu.Lock()
	defer o.devMu.Unlock()
	if _, ok := o.devices[user]; !ok && len(o.devices) >= maxCachedUsers {
		for u := range o.devices { // any one: it is only a cache
			delete(o.devices, u)
			break
		}
	}
	o.devices[user] = &userDevices{devices: devices, fetched: o.now()}
	return devices, nil
}

// olmPayload is the plaintext of an Olm-encrypted to-device message.
type olmPayload struct {
	Type          string          `json:"type"`
	Content       json.RawMessage `json:"content"`
	Sender        id.UserID       `json:"sender"`
	SenderDevice  id.DeviceID     `json:"sender_device,omitempty"`
	Keys          olmKeys         `json:"keys"`
	Recipient     id.UserID       `json:"recipient"`
	RecipientKeys olmKeys         `json:"recipient_keys"`
	// SenderDeviceKeys is MSC4147's copy of the sender's device keys.
	SenderDeviceKeys json.RawMessage `json:"sender_device_keys,omitempty"`
}

type olmKeys struct {
	Ed25519 id.Ed25519 `json:"ed25519"`
}

// DecryptToDevice decrypts an m.room.encrypted to-device event sent to
// this device with Olm, and checks that its plaintext was meant for this
// device and written by a device of its sender. The event returned has
// the plaintext's type (as a to-device type, whatever it is) and its
// content in Content.VeryRaw; Mautrix.TrustSource names the sending
// device. Replies to that device are encrypted from then on.
func (o *Olm) DecryptToDevice(ctx context.Context, evt *event.Event) (*event.Event, error) {
	var content event.EncryptedEventContent
	if err := json.Unmarshal(evt.Content.VeryRaw, &content); err != nil {
		return nil, fmt.Errorf("olm: content: %w", err)
	}
	if content.Algorithm != id.AlgorithmOlmV1 {
		return nil, fmt.Errorf("olm: algorithm %q is not %s", content.Algorithm, id.AlgorithmOlmV1)
	}
	peer := content.SenderKey
	ours, ok := content.OlmCiphertext[o.identity]
	switch {
	case peer == "":
		return nil, errors.New("olm: no sender_key")
	case !ok:
		return nil, errors.New("olm: nothing in it is encrypted for this device")
	case ours.Type != id.OlmMsgTypePreKey && ours.Type != id.OlmMsgTypeMsg:
		return nil, fmt.Errorf("olm: message type %d", ours.Type)
	case ours.Body == "" || len(ours.Body) > maxOlmBody:
		return nil, fmt.Errorf("olm: ciphertext of %d bytes", len(ours.Body))
	}
	plain, err := o.decrypt(peer, ours.Type, ours.Body)
	if err != nil {
		return nil, fmt.Errorf("olm: from %s (%s): %w", evt.Sender, peer, err)
	}
	var p olmPayload
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, fmt.Errorf("olm: plaintext: %w", err)
	}
	switch {
	case p.Sender != evt.Sender:
		return nil, fmt.Errorf("olm: plaintext sender %q is not the event's %q", p.Sender, evt.Sender)
	case p.Recipient != o.user:
		return nil, fmt.Errorf("olm: plaintext recipient %q is not %s", p.Recipient, o.user)
	case p.RecipientKeys.Ed25519 != o.signing:
		return nil, errors.New("olm: plaintext recipient key is not this device's")
	case p.Type == "":
		return nil, errors.New("olm: plaintext without type")
	case !isJSONObject(p.Content):
		return nil, errors.New("olm: plaintext content is not an object")
	}
	dev, err := o.senderDevice(ctx, evt.Sender, peer, &p)
	if err != nil {
		return nil, fmt.Errorf("olm: from %s: %w", evt.Sender, err)
	}
	o.mu.Lock()
	o.writers.add(writerKey(dev.user, dev.device))
	o.mu.Unlock()

	out := &event.Event{
		Sender:     evt.Sender,
		Type:       event.Type{Type: p.Type, Class: event.ToDeviceEventType},
		ToUserID:   evt.ToUserID,
		ToDeviceID: evt.ToDeviceID,
		Content:    event.Content{VeryRaw: p.Content},
	}
	if err := json.Unmarshal(p.Content, &out.Content.Raw); err != nil {
		return nil, fmt.Errorf("olm: plaintext content: %w", err)
	}
	out.Mautrix.WasEncrypted = true
	out.Mautrix.TrustSource = &id.Device{UserID: dev.user, DeviceID: dev.device, IdentityKey: dev.identity, SigningKey: dev.signing}
	return out, nil
}

func isJSONObject(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil && m != nil
}

func writerKey(user id.UserID, device id.DeviceID) string {
	return string(user) + "\x00" + string(device)
}

// senderDevice finds the device of user whose identity key is peer: from
// the plaintext's MSC4147 device keys, or from /keys/query. Its signing
// key must be the one the plaintext claims.
func (o *Olm) senderDevice(ctx context.Context, user id.UserID, peer id.Curve25519, p *olmPayload) (deviceKeys, error) {
	var dev deviceKeys
	found := false
	if len(p.SenderDeviceKeys) > 0 && string(p.SenderDeviceKeys) != "null" {
		var named struct {
			DeviceID id.DeviceID `json:"device_id"`
		}
		if json.Unmarshal(p.SenderDeviceKeys, &named) == nil {
			if dk, err := verifyDeviceKeys(p.SenderDeviceKeys, user, named.DeviceID); err == nil && dk.identity == peer {
				dev, found = dk, true
			}
		}
	}
	for _, refresh := range []bool{false, true} {
		if found {
			break
		}
		devices, err := o.devicesOf(ctx, user, refresh)
		if err != nil {
			return deviceKeys{}, err
		}
		for _, dk := range devices {
			if dk.identity == peer {
				dev, found = dk, true
				break
			}
		}
	}
	if !found {
		return deviceKeys{}, fmt.Errorf("no device of %s has identity key %s", user, peer)
	}
	if dev.signing != p.Keys.Ed25519 {
		return deviceKeys{}, fmt.Errorf("the plaintext's signing key is not that of device %s", dev.device)
	}
	return dev, nil
}

// decrypt decrypts one Olm message from peer with a session it has, or,
// for a pre-key message, a new inbound session.
func (o *Olm) decrypt(peer id.Curve25519, typ id.OlmMsgType, body string) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ps, err := o.loadSessions(peer)
	if err != nil {
		return nil, err
	}
	now := o.now().UnixMilli()
	for i := range ps.Sessions {
		s := &ps.Sessions[i]
		sess, err := session.OlmSessionFromPickled([]byte(s.Pickle), o.key)
		if err != nil {
			o.log.Warn().Err(err).Str("peer", string(peer)).Msg("matrix: skipping an Olm session that cannot be read")
			continue
		}
		if typ == id.OlmMsgTypePreKey {
			match, err := guard(func() (bool, error) { return sess.MatchesInboundSessionFrom(string(peer), body) })
			if err != nil || !match {
				continue
			}
		}
		plain, err := guard(func() ([]byte, error) { return sess.Decrypt(body, typ) })
		if err != nil {
			if typ == id.OlmMsgTypePreKey {
				return nil, fmt.Errorf("the session this pre-key message is for cannot decrypt it: %w", err)
			}
			continue
		}
		if err := o.putSession(ps, i, sess, now); err != nil {
			return nil, err
		}
		return plain, nil
	}
	if typ != id.OlmMsgTypePreKey {
		return nil, errors.New("no Olm session with this peer decrypts the message")
	}
	inbound, err := guard(func() (*session.OlmSession, error) {
		s, err := o.account.NewInboundSessionFrom(&peer, body)
		if err != nil {
			return nil, err
		}
		return s.(*session.OlmSession), nil
	})
	if err != nil {
		return nil, fmt.Errorf("new inbound session: %w", err)
	}
	plain, err := guard(func() ([]byte, error) { return inbound.Decrypt(body, typ) })
	if err != nil {
		return nil, fmt.Errorf("decrypt with a new inbound session: %w", err)
	}
	ps.Sessions = append(ps.Sessions, olmSession{Created: now})
	if err := o.putSession(ps, len(ps.Sessions)-1, inbound, now); err != nil {
		return nil, err
	}
	// The one-time key is spent. The session is saved first: losing the
	// key in a crash is harmless, losing the session is not.
	if err := o.account.RemoveOneTimeKeys(inbound); err != nil {
		return nil, fmt.Errorf("remove the spent one-time key: %w", err)
	}
	if err := o.saveAccount(); err != nil {
		return nil, err
	}
	return plain, nil
}

// guard turns a panic in goolm on hostile input into an error.
func guard[T any](f func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("olm: %v", r)
		}
	}()
	return f()
}

// EncryptToDevice encrypts (typ, content) with Olm for a device that wrote
// encrypted to this one; other devices get it unchanged.
func (o *Olm) EncryptToDevice(ctx context.Context, user id.UserID, device id.DeviceID, typ event.Type, content any) (event.Type, any, error) {
	o.mu.Lock()
	encrypted := o.writers.has(writerKey(user, device))
	o.mu.Unlock()
	if !encrypted {
		return typ, content, nil
	}
	enc, err := o.encrypt(ctx, user, device, typ.Type, content)
	if err != nil {
		return typ, nil, fmt.Errorf("olm: to %s/%s: %w", user, device, err)
	}
	return event.Type{Type: typeRoomEncrypted, Class: event.ToDeviceEventType}, enc, nil
}

// encrypt encrypts one to-device message for a device, starting an Olm
// session with one of its one-time keys if there is none.
func (o *Olm) encrypt(ctx context.Context, user id.UserID, device id.DeviceID, typ string, content any) (*event.EncryptedEventContent, error) {
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, fmt.Errorf("content: %w", err)
	}
	devices, err := o.devicesOf(ctx, user, false)
	if err != nil {
		return nil, err
	}
	dev, ok := devices[device]
	if !ok {
		if devices, err = o.devicesOf(ctx, user, true); err != nil {
			return nil, err
		}
		if dev, ok = devices[device]; !ok {
			return nil, errors.New("the device has no published keys")
		}
	}
	plain, err := json.Marshal(olmPayload{
		Type: typ, Content: raw,
		Sender: o.user, SenderDevice: o.device, Keys: olmKeys{o.signing},
		Recipient: user, RecipientKeys: olmKeys{dev.signing},
	})
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	enc, err := o.encryptWithSession(dev, plain, nil)
	o.mu.Unlock()
	if err == nil || !errors.Is(err, errNoSession) {
		return enc, err
	}
	otk, err := o.claimKey(ctx, dev)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.encryptWithSession(dev, plain, &otk)
}

var errNoSession = errors.New("no Olm session")

// encryptWithSession encrypts plain with the newest session with dev, or,
// when there is none and otk is given, a new outbound session on otk.
// Called with o.mu held.
func (o *Olm) encryptWithSession(dev deviceKeys, plain []byte, otk *id.Curve25519) (*event.EncryptedEventContent, error) {
	ps, err := o.loadSessions(dev.identity)
	if err != nil {
		return nil, err
	}
	now := o.now().UnixMilli()
	var sess *session.OlmSession
	i := newestSession(ps.Sessions)
	if i >= 0 {
		sess, err = session.OlmSessionFromPickled([]byte(ps.Sessions[i].Pickle), o.key)
		if err != nil {
			return nil, fmt.Errorf("read the Olm session: %w", err)
		}
	} else {
		if otk == nil {
			return nil, errNoSession
		}
		s, err := o.account.NewOutboundSession(dev.identity, *otk)
		if err != nil {
			return nil, fmt.Errorf("new outbound session: %w", err)
		}
		sess = s.(*session.OlmSession)
		ps.Sessions = append(ps.Sessions, olmSession{Created: now})
		i = len(ps.Sessions) - 1
	}
	msgType, ciphertext, err := sess.Encrypt(plain)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if err := o.putSession(ps, i, sess, 0); err != nil {
		return nil, err
	}
	return &event.EncryptedEventContent{
		Algorithm: id.AlgorithmOlmV1,
		SenderKey: o.identity,
		OlmCiphertext: event.OlmCiphertexts{
			dev.identity: {Type: msgType, Body: string(ciphertext)},
		},
	}, nil
}

// newestSession picks the session to encrypt with: the one that last
// received a message, else the newest; -1 when there is none.
func newestSession(ss []olmSession) int {
	best := -1
	for i, s := range ss {
		if best < 0 || s.LastReceived > ss[best].LastReceived ||
			(s.LastReceived == ss[best].LastReceived && s.Created > ss[best].Created) {
			best = i
		}
	}
	return best
}

// claimKey claims a one-time key of dev and checks its signature.
func (o *Olm) claimKey(ctx context.Context, dev deviceKeys) (id.Curve25519, error) {
	cli, err := o.deviceClient(ctx)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, keyRequestWindow)
	defer cancel()
	resp, err := cli.ClaimKeys(cctx, &mautrix.ReqClaimKeys{
		OneTimeKeys: mautrix.OneTimeKeysRequest{dev.user: {dev.device: id.KeyAlgorithmSignedCurve25519}},
		Timeout:     keyRequestWindow.Milliseconds(),
	})
	if err != nil {
		return "", fmt.Errorf("claim a one-time key: %w", err)
	}
	for keyID, otk := range resp.OneTimeKeys[dev.user][dev.device] {
		if alg, _ := keyID.Parse(); alg != id.KeyAlgorithmSignedCurve25519 {
			continue
		}
		ok, err := signatures.VerifySignatureJSON(otk.RawData, dev.user, string(dev.device), dev.signing)
		if err != nil || !ok {
			return "", fmt.Errorf("the claimed one-time key %s is not signed by the device (%v)", keyID, err)
		}
		return otk.Key, nil
	}
	return "", errors.New("the device has no one-time keys left")
}

// sessionFile is the file of the sessions with peer.
func sessionFile(peer id.Curve25519) string {
	sum := sha256.Sum256([]byte(peer))
	return hex.EncodeToString(sum[:20]) + ".json"
}

// loadSessions reads the sessions with peer. Called with o.mu held.
func (o *Olm) loadSessions(peer id.Curve25519) (*peerSessions, error) {
	ps := &peerSessions{PeerKey: peer}
	name := filepath.Join(o.dir, olmSessionDir, sessionFile(peer))
	if err := readJSON(name, ps); err != nil {
		o.log.Warn().Err(err).Str("peer", string(peer)).Msg("matrix: dropping Olm sessions that cannot be read")
		return &peerSessions{PeerKey: peer}, nil
	}
	if ps.PeerKey != peer {
		return &peerSessions{PeerKey: peer}, nil
	}
	return ps, nil
}

// putSession stores sess as session i of ps and writes the file, keeping
// the maxSessionsPerPeer most recently used sessions. received, when not
// 0, is when sess last decrypted a message. Called with o.mu held.
func (o *Olm) putSession(ps *peerSessions, i int, sess *session.OlmSession, received int64) error {
	pickled, err := sess.Pickle(o.key)
	if err != nil {
		return fmt.Errorf("pickle the Olm session: %w", err)
	}
	ps.Sessions[i].Pickle = string(pickled)
	if received != 0 {
		ps.Sessions[i].LastReceived = received
	}
	if len(ps.Sessions) > maxSessionsPerPeer {
		slices.SortStableFunc(ps.Sessions, func(a, b olmSession) int {
			return cmp.Compare(max(b.LastReceived, b.Created), max(a.LastReceived, a.Created))
		})
		ps.Sessions = ps.Sessions[:maxSessionsPerPeer]
	}
	file := sessionFile(ps.PeerKey)
	if err := writeJSON(filepath.Join(o.dir, olmSessionDir, file), ps); err != nil {
		return err
	}
	o.peers[file] = o.now()
	for len(o.peers) > maxPeers {
		oldest, at := "", time.Time{}
		for f, t := range o.peers {
			if oldest == "" || t.Before(at) {
				oldest, at = f, t
			}
		}
		delete(o.peers, oldest)
		if err := os.Remove(filepath.Join(o.dir, olmSessionDir, oldest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			o.log.Warn().Err(err).Msg("matrix: cannot remove an old Olm session file")
		}
	}
	return nil
}
