package matrix

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/focus-sfu/focus/config"
)

// Config is what the Transport needs to talk to one homeserver. Build it
// from the file's matrix section with NewConfig.
type Config struct {
	// HomeserverURL is the client-server API base URL.
	HomeserverURL string
	// ServerName is the homeserver's server name (the bot is
	// @BotLocalpart:ServerName).
	ServerName string
	// ASToken authenticates the focus to the homeserver; HSToken the
	// homeserver to the focus.
	ASToken string
	HSToken string
	// BotLocalpart and DeviceID name the bot and the device it logs in.
	BotLocalpart string
	DeviceID     id.DeviceID
	// DataDir keeps the sync token, transaction IDs and device token.
	DataDir string
	// AutoJoin joins rooms the bot is invited to, when Policy allows.
	AutoJoin bool
	Policy   Policy
	// MaxParticipantsPerConference and MaxConferences are limits for the
	// call logic (0 = unlimited); the Transport only carries them.
	MaxParticipantsPerConference int
	MaxConferences               int

	// HTTPClient makes the calls to the homeserver. Nil: a client of the
	// Transport's own, closed by Close.
	HTTPClient *http.Client
	// SyncTimeout is the /sync long-poll timeout. 0: 30 s.
	SyncTimeout time.Duration
	// MinBackoff and MaxBackoff bound the waits between retries when the
	// homeserver fails. 0: 1 s and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Crypto decrypts and encrypts to-device messages. Nil: plaintext only;
	// encrypted messages are logged and dropped.
	Crypto Crypto
}

// NewConfig builds a Config from the matrix section of the configuration
// file, reading the tokens from the registration file when the section
// names one. A problem with the file is a *config.Error naming
// matrix.registration.
func NewConfig(m config.Matrix) (Config, error) {
	c := Config{
		HomeserverURL:                m.HomeserverURL,
		ServerName:                   m.ServerName,
		ASToken:                      m.ASToken,
		HSToken:                      m.HSToken,
		BotLocalpart:                 m.BotLocalpart,
		DeviceID:                     id.DeviceID(m.DeviceID),
		DataDir:                      m.DataDir,
		AutoJoin:                     m.AutoJoin,
		MaxParticipantsPerConference: m.MaxParticipantsPerConference,
		MaxConferences:               m.MaxConferences,
		Policy: Policy{
			Homeservers: m.AllowedHomeservers,
			Users:       m.AllowedUsers,
			Rooms:       m.AllowedRooms,
		},
	}
	if m.Registration != "" {
		reg, err := LoadRegistration(m.Registration)
		if err != nil {
			return Config{}, &config.Error{Key: "matrix.registration", Problem: err.Error(), Err: err}
		}
		if bot := id.NewUserID(m.BotLocalpart, m.ServerName); !CoversUser(reg, bot) {
			return Config{}, &config.Error{Key: "matrix.bot_localpart", Problem: fmt.Sprintf(
				"%s is not in the user namespace of %s; regenerate the registration with focus generate-registration",
				bot, m.Registration)}
		}
		c.ASToken, c.HSToken = reg.AppToken, reg.ServerToken
	}
	return c, c.check()
}

// check reports what NewTransport cannot work without.
func (c Config) check() error {
	switch {
	case c.HomeserverURL == "":
		return errors.New("matrix: no homeserver URL")
	case c.ServerName == "":
		return errors.New("matrix: no server name")
	case c.ASToken == "" || c.HSToken == "":
		return errors.New("matrix: no as_token or hs_token")
	case c.BotLocalpart == "":
		return errors.New("matrix: no bot localpart")
	case c.DeviceID == "":
		return errors.New("matrix: no device ID")
	case c.DataDir == "":
		return errors.New("matrix: no data directory")
	}
	return nil
}

// UserID is the bot's user ID.
func (c Config) UserID() id.UserID {
	return id.NewUserID(c.BotLocalpart, c.ServerName)
}

func (c Config) syncTimeout() time.Duration {
	if c.SyncTimeout > 0 {
		return c.SyncTimeout
	}
	return 30 * time.Second
}

func (c Config) backoff() (lo, hi time.Duration) {
	lo, hi = c.MinBackoff, c.MaxBackoff
	if lo <= 0 {
		lo = time.Second
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	return lo, max(lo, hi)
}

// Policy says who may use the focus. An empty list allows everything of
// its kind.
type Policy struct {
	// Homeservers are server names whose users are allowed.
	Homeservers []string
	// Users are path.Match globs on user IDs.
	Users []string
	// Rooms are path.Match globs on room IDs.
	Rooms []string
}

// AllowUser returns nil if user may use the focus, or an error saying
// which rule refuses it.
func (p Policy) AllowUser(user id.UserID) error {
	_, server, err := user.Parse()
	if err != nil {
		return fmt.Errorf("user %q: not a valid user ID", user)
	}
	if len(p.Homeservers) > 0 && !containsFold(p.Homeservers, server) {
		return fmt.Errorf("user %s: homeserver %s is not in matrix.allowed_homeservers", user, server)
	}
	if len(p.Users) > 0 && !matchAny(p.Users, string(user)) {
		return fmt.Errorf("user %s: not in matrix.allowed_users", user)
	}
	return nil
}

// AllowRoom returns nil if the focus may serve calls in room.
func (p Policy) AllowRoom(room id.RoomID) error {
	if len(p.Rooms) > 0 && !matchAny(p.Rooms, string(room)) {
		return fmt.Errorf("room %s: not in matrix.allowed_rooms", room)
	}
	return nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if ok, err := path.Match(g, s); err == nil && ok {
			return true
		}
	}
	return false
}
