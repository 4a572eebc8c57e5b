package config_test

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/focus-sfu/focus/config"
)

// TestSampleCoversEveryKey keeps config.sample.yaml in step with Config: every
// key of the struct appears in the sample. (Keys in the sample that Config
// lacks already fail TestSampleLoads.)
func TestSampleCoversEveryKey(t *testing.T) {
	data, err := os.ReadFile("../config.sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	inSample := map[string]bool{}
	nodeKeys(doc.Content[0], "", inSample)

	var want []string
	structKeys(reflect.TypeFor[config.Config](), "", &want)
	if len(want) < 20 {
		t.Fatalf("found only %d keys in Config: %v", len(want), want)
	}
	for _, k := range want {
		if !inSample[k] {
			t.Errorf("config.sample.yaml lacks %q", k)
		}
	}
	for k := range inSample {
		if !slices.Contains(want, k) {
			t.Errorf("config.sample.yaml has %q, which Config lacks", k)
		}
	}
}

// structKeys lists the dotted key paths of struct type t; list items are
// written "[]".
func structKeys(t reflect.Type, prefix string, out *[]string) {
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		key := joinPath(prefix, name)
		*out = append(*out, key)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
			if ft.Kind() == reflect.Struct {
				structKeys(ft, key+"[]", out)
			}
			continue
		}
		if ft.Kind() == reflect.Struct {
			structKeys(ft, key, out)
		}
	}
}

func nodeKeys(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := joinPath(prefix, n.Content[i].Value)
			out[key] = true
			nodeKeys(n.Content[i+1], key, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			nodeKeys(c, prefix+"[]", out)
		}
	}
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
