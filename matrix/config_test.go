package matrix

import (
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

func TestPolicy(t *testing.T) {
	p := Policy{
		Homeservers: []string{"example.org", "Other.example:8448"},
		Users:       []string{"@*:example.org", "@bob:other.example:8448"},
		Rooms:       []string{"!calls*:example.org"},
	}
	users := []struct {
		user id.UserID
		ok   bool
	}{
		{"@alice:example.org", true},
		{"@bob:other.example:8448", true},
		{"@carol:other.example:8448", false}, // homeserver allowed, user not
		{"@mallory:evil.example", false},     // homeserver not allowed
		{"not a user", false},
	}
	for _, u := range users {
		if err := p.AllowUser(u.user); (err == nil) != u.ok {
			t.Errorf("AllowUser(%s) = %v, want ok=%v", u.user, err, u.ok)
		}
	}
	if err := p.AllowUser("@mallory:evil.example"); err == nil || err.Error() != "user @mallory:evil.example: homeserver evil.example is not in matrix.allowed_homeservers" {
		t.Errorf("refusal = %v", err)
	}
	if err := p.AllowRoom("!calls1:example.org"); err != nil {
		t.Errorf("AllowRoom = %v", err)
	}
	if err := p.AllowRoom("!other:example.org"); err == nil || err.Error() != "room !other:example.org: not in matrix.allowed_rooms" {
		t.Errorf("AllowRoom(other) = %v", err)
	}
	var open Policy
	if open.AllowUser("@anyone:anywhere") != nil || open.AllowRoom("!any:where") != nil {
		t.Error("an empty policy refuses")
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	if c.syncTimeout() != 30*time.Second {
		t.Errorf("sync timeout %v", c.syncTimeout())
	}
	if lo, hi := c.backoff(); lo != time.Second || hi != 30*time.Second {
		t.Errorf("backoff %v %v", lo, hi)
	}
	c.MinBackoff, c.MaxBackoff = time.Minute, time.Second
	if lo, hi := c.backoff(); lo != time.Minute || hi != time.Minute {
		t.Errorf("backoff with max < min: %v %v", lo, hi)
	}
}
