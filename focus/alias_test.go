package focus

import (
	"errors"
	"slices"
	"testing"
)

func TestAliasJoinsNamespaces(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	if err := s.Alias("whip:lobby", "lk:lobby"); err != nil {
		t.Fatal(err)
	}
	var events []ConferenceID
	s.OnEvent(func(ev Event) {
		if j, ok := ev.(ParticipantJoined); ok {
			events = append(events, j.Conference.ID())
		}
	})
	a, err := s.Join("whip:lobby", ParticipantInfo{Identity: "whip", Role: RoleIngress})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Join("lk:lobby", ParticipantInfo{Identity: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	c := a.Conference()
	if b.Conference() != c || s.Conference("whip:lobby") != c || s.Conference("lk:lobby") != c {
		t.Fatal("the two names are not one conference")
	}
	if c.ID() != "lk:lobby" || s.Canonical("whip:lobby") != "lk:lobby" || s.Canonical("x") != "x" {
		t.Fatalf("ID %q, want the canonical name", c.ID())
	}
	if got := c.Names(); !slices.Equal(got, []ConferenceID{"lk:lobby", "whip:lobby"}) {
		t.Fatalf("Names = %v", got)
	}
	if n, ok := c.Has("whip:"); !ok || n != "whip:lobby" {
		t.Fatalf("Has(whip:) = %q %v", n, ok)
	}
	if _, ok := c.Has("m:"); ok {
		t.Fatal("Has(m:) found a name")
	}
	if got := c.NamesIn("lk:"); !slices.Equal(got, []string{"lobby"}) {
		t.Fatalf("NamesIn(lk:) = %v", got)
	}
	if !slices.Equal(events, []ConferenceID{"lk:lobby", "lk:lobby"}) {
		t.Fatalf("events named %v", events)
	}
	if len(c.Participants()) != 2 {
		t.Fatalf("%d participants", len(c.Participants()))
	}
	a.Leave()
	b.Leave()
	if s.Conference("whip:lobby") != nil || len(s.Conferences()) != 0 {
		t.Fatal("the empty conference stayed")
	}
	// The alias outlives the conference.
	p, _ := s.Join("whip:lobby", ParticipantInfo{})
	if p.Conference().ID() != "lk:lobby" {
		t.Fatalf("after restart: %q", p.Conference().ID())
	}
	p.Leave()
}

func TestAliasRefusals(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	live, _ := s.Join("whip:busy", ParticipantInfo{})
	defer live.Leave()
	if err := s.Alias("a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Alias("a", "b"); err != nil {
		t.Fatalf("the same alias again: %v", err)
	}
	for _, tc := range []struct{ alias, canonical ConferenceID }{
		{"", "b"},
		{"c", ""},
		{"c", "c"},            // itself
		{"a", "c"},            // already an alias of b
		{"c", "a"},            // a chain: a is an alias
		{"b", "c"},            // a chain: b has aliases
		{"b", "a"},            // a loop
		{"whip:busy", "lk:x"}, // live
	} {
		if err := s.Alias(tc.alias, tc.canonical); !errors.Is(err, ErrAlias) {
			t.Errorf("Alias(%q, %q) = %v, want ErrAlias", tc.alias, tc.canonical, err)
		}
	}
	// A live canonical name is fine: the alias joins it.
	if err := s.Alias("lk:busy", "whip:busy"); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Join("lk:busy", ParticipantInfo{}); p.Conference() != live.Conference() {
		t.Fatal("alias of a live conference did not join it")
	} else {
		p.Leave()
	}
}

func TestUnalias(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	_ = s.Alias("whip:x", "lk:x")
	_ = s.Alias("m:x", "lk:x")
	p, _ := s.Join("whip:x", ParticipantInfo{})
	defer p.Leave()
	if !s.Unalias("whip:x") || s.Unalias("whip:x") {
		t.Fatal("Unalias reported wrongly")
	}
	if got := p.Conference().Names(); !slices.Equal(got, []ConferenceID{"lk:x", "m:x"}) {
		t.Fatalf("Names = %v", got)
	}
	q, _ := s.Join("whip:x", ParticipantInfo{})
	defer q.Leave()
	if q.Conference() == p.Conference() || q.Conference().ID() != "whip:x" {
		t.Fatal("an unaliased name still joins the old conference")
	}
	s.Unalias("m:x")
	if got := p.Conference().Names(); !slices.Equal(got, []ConferenceID{"lk:x"}) {
		t.Fatalf("Names = %v", got)
	}
}
