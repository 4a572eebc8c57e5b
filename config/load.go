package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds how much of a config file is read; real files are a few
// KiB.
const maxFileSize = 1 << 20

// maxValues bounds how many values a file may expand to. Aliases let a small
// file name the same subtree many times over.
const maxValues = 100_000

// Load reads the YAML file at path, overlays it on Default and validates the
// result.
func Load(path string) (Config, error) {
	data, err := readFile(path)
	if err != nil {
		return Config{}, err
	}
	return Parse(data)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, cannotRead(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, cannotRead(path, err)
	}
	if len(data) > maxFileSize {
		return nil, &Error{Problem: fmt.Sprintf("cannot read %s: larger than %d bytes", path, maxFileSize)}
	}
	return data, nil
}

func cannotRead(path string, err error) *Error {
	cause := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		cause = pe.Err // the path is already in the message
	}
	return &Error{Problem: fmt.Sprintf("cannot read %s: %v", path, cause), Err: err}
}

// Parse decodes a YAML document, overlays it on Default and validates the
// result. Keys left out, and keys set to null, keep their defaults.
func Parse(data []byte) (Config, error) {
	if len(data) > maxFileSize {
		return Config{}, &Error{Problem: fmt.Sprintf("larger than %d bytes", maxFileSize)}
	}
	root, err := parseYAML(data)
	if err != nil {
		return Config{}, err
	}
	cfg := Default()
	if root != nil {
		d := decoder{budget: maxValues}
		if err := d.decode(root, reflect.ValueOf(&cfg).Elem(), ""); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// parseYAML returns the root node of the only document in data, or nil when
// data holds no document at all.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	// yaml.v3 reports errors by panicking internally and recovering; this
	// keeps any panic that escapes it from taking the process down.
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, &Error{Problem: fmt.Sprintf("invalid YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, invalidYAML(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, &Error{Problem: "the file holds more than one YAML document"}
	case !errors.Is(err, io.EOF):
		return nil, invalidYAML(err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

func invalidYAML(err error) *Error {
	return &Error{Problem: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
}

// decoder copies a yaml.Node tree into a Config by reflection, checking every
// key and type on the way so that errors carry the full key path.
type decoder struct {
	budget int
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string) error {
	d.budget--
	if d.budget < 0 {
		return &Error{Problem: fmt.Sprintf("the file expands to more than %d values", maxValues)}
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if isNull(n) {
		return nil
	}
	if v.Type() == durationType {
		return decodeDuration(n, v, key)
	}
	switch v.Kind() {
	case reflect.Struct:
		return d.mapping(n, v, key)
	case reflect.Slice:
		return d.list(n, v, key)
	case reflect.Map:
		return d.dict(n, v, key)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return errorf(key, "expected a string, got "+describe(n))
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return errorf(key, "expected an integer, got "+describe(n))
		}
		var i int64
		if err := n.Decode(&i); err != nil || int64(int(i)) != i {
			return errorf(key, n.Value+" is out of range")
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return errorf(key, "expected true or false, got "+describe(n))
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return errorf(key, "expected true or false, got "+describe(n))
		}
		v.SetBool(b)
	default:
		// Only reachable if Config gains a field of a new kind.
		return errorf(key, fmt.Sprintf("unsupported field type %s", v.Type()))
	}
	return nil
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, key string) error {
	if n.Kind != yaml.MappingNode {
		if key == "" {
			return errorf("", "expected a mapping of keys at the top level, got "+describe(n))
		}
		return errorf(key, "expected a mapping, got "+describe(n))
	}
	fields := yamlFields(v.Type())
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return errorf(key, "keys must be plain strings, got "+describe(k))
		}
		path := joinKey(key, k.Value)
		if k.ShortTag() == "!!merge" {
			return errorf(path, "merge keys are not supported")
		}
		idx, ok := fields[k.Value]
		if !ok {
			return &Error{Key: path, Problem: problemUnknownKey}
		}
		if seen[k.Value] {
			return errorf(path, "set more than once")
		}
		seen[k.Value] = true
		if err := d.decode(val, v.Field(idx), path); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) list(n *yaml.Node, v reflect.Value, key string) error {
	if n.Kind != yaml.SequenceNode {
		return errorf(key, "expected a list, got "+describe(n))
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, el := range n.Content {
		if err := d.decode(el, s.Index(i), indexKey(key, i)); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}

// dict decodes a mapping with free-form keys (server names, say) into a map
// with string keys. Like a list, it replaces the default as a whole.
func (d *decoder) dict(n *yaml.Node, v reflect.Value, key string) error {
	if n.Kind != yaml.MappingNode {
		return errorf(key, "expected a mapping, got "+describe(n))
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			return errorf(key, "keys must be plain strings, got "+describe(k))
		}
		path := mapKey(key, k.Value)
		if k.ShortTag() == "!!merge" {
			return errorf(path, "merge keys are not supported")
		}
		mk := reflect.ValueOf(k.Value).Convert(v.Type().Key())
		if m.MapIndex(mk).IsValid() {
			return errorf(path, "set more than once")
		}
		el := reflect.New(v.Type().Elem()).Elem()
		if err := d.decode(val, el, path); err != nil {
			return err
		}
		m.SetMapIndex(mk, el)
	}
	v.Set(m)
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// decodeDuration reads a Go duration string: 90s, 30m, 1h, 1h30m.
func decodeDuration(n *yaml.Node, v reflect.Value, key string) error {
	if n.Kind != yaml.ScalarNode {
		return errorf(key, "expected a duration like 1h or 30m, got "+describe(n))
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		return errorf(key, "expected a duration like 1h or 30m, got "+describe(n))
	}
	v.SetInt(int64(dur))
	return nil
}

// yamlFields maps the yaml key of each field of struct type t to its index.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's value for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if isNull(n) {
		return "null"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return "the quoted string " + strconv.Quote(v)
	}
	return strconv.Quote(v)
}

func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func indexKey(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// mapKey names an entry of a free-form mapping: homeservers["example.org"].
// The quotes keep a key's own dots apart from the path's.
func mapKey(parent, k string) string {
	return parent + "[" + strconv.Quote(k) + "]"
}
