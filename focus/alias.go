package focus

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Aliases join namespaces. Each front-end names conferences in its own
// namespace ("whip:lobby", "lk:<room>"); an alias makes a second name
// resolve to the conference of a canonical one, so that the front-ends
// of both names share one set of participants and tracks. Aliases are
// registry entries: they outlive the conferences they point at.

// ErrAlias is wrapped by the errors Alias returns.
var ErrAlias = errors.New("focus: alias refused")

// Alias makes alias another name of the conference canonical: Join,
// Conference and the events for either name then concern one
// conference, whose ID is canonical. It refuses an alias that already
// names a live conference, one that already points elsewhere, and any
// that would chain (canonical is itself an alias, or alias is already
// some other name's canonical) or loop. Aliasing the same pair twice is
// a no-op.
func (s *SFU) Alias(alias, canonical ConferenceID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case alias == "" || canonical == "":
		return fmt.Errorf("%w: empty name", ErrAlias)
	case alias == canonical:
		return fmt.Errorf("%w: %q is its own alias", ErrAlias, alias)
	}
	if to, ok := s.aliases[alias]; ok {
		if to == canonical {
			return nil
		}
		return fmt.Errorf("%w: %q is already an alias of %q", ErrAlias, alias, to)
	}
	if to, ok := s.aliases[canonical]; ok {
		return fmt.Errorf("%w: %q is an alias of %q; alias the canonical name instead", ErrAlias, canonical, to)
	}
	if len(s.aliasesOf[alias]) > 0 {
		return fmt.Errorf("%w: %q is the canonical name of other aliases", ErrAlias, alias)
	}
	if c := s.conferences[alias]; c != nil {
		return fmt.Errorf("%w: %q is a live conference with participants", ErrAlias, alias)
	}
	if s.aliases == nil {
		s.aliases = make(map[ConferenceID]ConferenceID)
		s.aliasesOf = make(map[ConferenceID][]ConferenceID)
	}
	s.aliases[alias] = canonical
	names := append(s.aliasesOf[canonical], alias)
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
	s.aliasesOf[canonical] = names
	return nil
}

// Unalias removes alias. A live conference keeps its participants under
// its canonical name; a later Join with alias starts a conference of its
// own. It reports whether alias was an alias.
func (s *SFU) Unalias(alias ConferenceID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	canonical, ok := s.aliases[alias]
	if !ok {
		return false
	}
	delete(s.aliases, alias)
	names := s.aliasesOf[canonical]
	out := make([]ConferenceID, 0, len(names))
	for _, n := range names {
		if n != alias {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		delete(s.aliasesOf, canonical)
	} else {
		s.aliasesOf[canonical] = out
	}
	return true
}

// Canonical returns the name id resolves to: its canonical name when it
// is an alias, else id itself.
func (s *SFU) Canonical(id ConferenceID) ConferenceID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resolveLocked(id)
}

func (s *SFU) resolveLocked(id ConferenceID) ConferenceID {
	if to, ok := s.aliases[id]; ok {
		return to
	}
	return id
}

// Names returns every name of the conference: its ID first, then its
// aliases in lexical order.
func (c *Conference) Names() []ConferenceID {
	s := c.sfu
	s.mu.Lock()
	defer s.mu.Unlock()
	aliases := s.aliasesOf[c.id]
	out := make([]ConferenceID, 0, 1+len(aliases))
	return append(append(out, c.id), aliases...)
}

// Has returns the conference's first name in the namespace prefix
// ("whip:", "lk:"), canonical first: a front-end finds its own name for
// a conference another front-end may have started.
func (c *Conference) Has(prefix string) (name ConferenceID, ok bool) {
	for _, n := range c.Names() {
		if strings.HasPrefix(string(n), prefix) {
			return n, true
		}
	}
	return "", false
}

// NamesIn returns the conference's names in the namespace prefix, with
// the prefix cut: the front-end's own names (room names) for it.
func (c *Conference) NamesIn(prefix string) []string {
	var out []string
	for _, n := range c.Names() {
		if rest, ok := strings.CutPrefix(string(n), prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}
