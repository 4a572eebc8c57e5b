package matrix

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/config"
)

// maxRegistrationSize bounds how much of a registration file is read; real
// ones are a few hundred bytes.
const maxRegistrationSize = 64 << 10

// tokenLength is the length of generated as_token and hs_token values.
const tokenLength = 64

// NewRegistration builds the appservice registration for the focus bot
// described by m: an exclusive namespace for the bot alone, ephemeral
// (to-device) pushes on, no rate limit. The tokens are m's inline ones if
// it has them, or new random ones.
//
// As mautrix bridges do, the appservice's own sender_localpart is a random
// name and the bot is a user in its namespace: Synapse refuses /sync to the
// sender user, and the bot device needs /sync on homeservers that do not
// push to-device messages. The Transport registers the bot at start.
func NewRegistration(m config.Matrix) (*appservice.Registration, error) {
	if m.ServerName == "" {
		return nil, &config.Error{Key: "matrix.server_name", Problem: "must be set to write a registration (the part after the colon in user IDs)"}
	}
	asToken, hsToken := m.ASToken, m.HSToken
	if asToken == "" {
		asToken, hsToken = randomToken(), randomToken()
	}
	rateLimited := false
	reg := &appservice.Registration{
		ID:                  m.BotLocalpart,
		URL:                 m.AppServiceURLOrDefault(),
		AppToken:            asToken,
		ServerToken:         hsToken,
		SenderLocalpart:     randomString(senderLength, lowerAlphabet),
		RateLimited:         &rateLimited,
		EphemeralEvents:     true,
		SoruEphemeralEvents: true,
	}
	reg.Namespaces.UserIDs = appservice.NamespaceList{{
		Regex:     BotNamespace(m.BotLocalpart, m.ServerName),
		Exclusive: true,
	}}
	return reg, nil
}

// BotNamespace is the user namespace regex that matches the bot and nobody
// else: ^@<localpart>:<server name>$, quoted.
func BotNamespace(localpart, serverName string) string {
	return "^@" + regexp.QuoteMeta(localpart) + ":" + regexp.QuoteMeta(serverName) + "$"
}

// senderLength is the length of the generated sender_localpart.
const senderLength = 32

// Alphabets of random strings: tokens, and localparts (lower case only).
const (
	tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	lowerAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// randomToken returns tokenLength characters from [A-Za-z0-9].
func randomToken() string { return randomString(tokenLength, tokenAlphabet) }

// randomString returns n characters drawn uniformly from alphabet.
func randomString(n int, alphabet string) string {
	// len(alphabet) need not divide 256; reject the bytes that would bias
	// the draw.
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		rand.Read(buf) // never fails (crypto/rand, Go 1.24+)
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// CoversUser reports whether the registration lets the appservice act as
// user: its sender, or a user its namespaces match.
func CoversUser(reg *appservice.Registration, user id.UserID) bool {
	if localpart, server, err := user.Parse(); err == nil && localpart == reg.SenderLocalpart && server != "" {
		return true
	}
	for _, ns := range reg.Namespaces.UserIDs {
		if re, err := regexp.Compile(ns.Regex); err == nil && re.MatchString(string(user)) {
			return true
		}
	}
	return false
}

// registrationHeader opens every generated file.
const registrationHeader = `# Appservice registration for the focus SFU, written by
#   focus generate-registration
# Give this file to the homeserver (Synapse: app_service_config_files;
# Dendrite: app_service_api.config_files) and point the focus at it with
# matrix.registration. It holds secrets: keep it private.
`

// MarshalRegistration renders reg as the YAML file the homeserver reads.
func MarshalRegistration(reg *appservice.Registration) ([]byte, error) {
	body, err := yaml.Marshal(reg)
	if err != nil {
		return nil, fmt.Errorf("matrix: registration: %w", err)
	}
	return append([]byte(registrationHeader), body...), nil
}

// ErrRegistrationExists is returned by WriteRegistration when the file is
// already there and overwriting was not asked for.
var ErrRegistrationExists = errors.New("registration file exists")

// WriteRegistration writes reg to path with mode 0600. Unless overwrite,
// an existing file is left alone and the error wraps
// ErrRegistrationExists.
func WriteRegistration(path string, reg *appservice.Registration, overwrite bool) error {
	data, err := MarshalRegistration(reg)
	if err != nil {
		return err
	}
	if overwrite {
		return writeFileAtomic(path, data, 0o600)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("matrix: %s: %w", path, ErrRegistrationExists)
	}
	if err != nil {
		return fmt.Errorf("matrix: write registration: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("matrix: write registration %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("matrix: write registration %s: %w", path, err)
	}
	return f.Close()
}

// LoadRegistration reads a registration file and checks that it has what
// the focus needs: both tokens and a sender_localpart.
func LoadRegistration(path string) (*appservice.Registration, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRegistrationSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(data) > maxRegistrationSize {
		return nil, fmt.Errorf("%s is larger than %d bytes; is it a registration file?", path, maxRegistrationSize)
	}
	reg, err := ParseRegistration(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return reg, nil
}

// ParseRegistration decodes and checks a registration file's contents.
func ParseRegistration(data []byte) (*appservice.Registration, error) {
	var reg appservice.Registration
	if err := yaml.Unmarshal(data, &reg); err != nil {
		return nil, fmt.Errorf("not a registration file: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	switch {
	case reg.AppToken == "":
		return nil, errors.New("the registration has no as_token")
	case reg.ServerToken == "":
		return nil, errors.New("the registration has no hs_token")
	case reg.SenderLocalpart == "":
		return nil, errors.New("the registration has no sender_localpart")
	}
	return &reg, nil
}

// writeFileAtomic replaces path with data: it writes a temporary file next
// to it, syncs it, renames it over path and syncs the directory, so a crash
// leaves the old file or the new one, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("matrix: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("matrix: write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("matrix: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("matrix: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("matrix: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("matrix: write %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename or create in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("matrix: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("matrix: sync %s: %w", dir, err)
	}
	return nil
}
