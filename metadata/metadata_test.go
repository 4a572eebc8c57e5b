package metadata

import (
	"encoding/json"
	"reflect"
	"testing"
)

const sample = `{
 "s1":{"user_id":"@a:hs","device_id":"DEVA","purpose":"m.usermedia","audio_muted":false,"video_muted":true,
       "tracks":{"a1":{"kind":"audio"},"v1":{"kind":"video","width":640,"height":480}}},
 "s2":{"purpose":"m.screenshare","audio_muted":false,"video_muted":false,"tracks":{"v2":{"kind":"video","width":1920,"height":1080}}},
 "1":{"purpose":"m.usermedia","audio_muted":true,"video_muted":false}
}`

func TestRoundTrip(t *testing.T) {
	var m Metadata
	if err := json.Unmarshal([]byte(sample), &m); err != nil {
		t.Fatal(err)
	}
	want := Metadata{
		"s1": {UserID: "@a:hs", DeviceID: "DEVA", Purpose: PurposeUsermedia, VideoMuted: true,
			Tracks: map[string]Track{"a1": {Kind: "audio"}, "v1": {Kind: "video", Width: 640, Height: 480}}},
		"s2": {Purpose: PurposeScreenshare, Tracks: map[string]Track{"v2": {Kind: "video", Width: 1920, Height: 1080}}},
		"1":  {Purpose: PurposeUsermedia, AudioMuted: true},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("decoded\n%#v\nwant\n%#v", m, want)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	// The encoding is the same JSON value as the input.
	var a, b any
	if err := json.Unmarshal([]byte(sample), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("re-encoded\n%s\nnot equal to the input", out)
	}
}

func TestMutedFlagsAlwaysWritten(t *testing.T) {
	out, err := json.Marshal(Stream{Purpose: PurposeUsermedia})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `{"purpose":"m.usermedia","audio_muted":false,"video_muted":false}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestCloneIsDeep(t *testing.T) {
	m := Metadata{"s": {Tracks: map[string]Track{"t": {Kind: "video"}}}}
	c := m.Clone()
	c["s"].Tracks["t"] = Track{Kind: "audio"}
	c["x"] = Stream{}
	if m["s"].Tracks["t"].Kind != "video" || len(m) != 1 {
		t.Fatalf("clone shares state with the original: %#v", m)
	}
	if Metadata(nil).Clone() != nil {
		t.Fatal("clone of nil is not nil")
	}
}

func TestMerge(t *testing.T) {
	a := Metadata{"s1": {Purpose: PurposeUsermedia, Tracks: map[string]Track{"t1": {}, "t2": {}}}, "s2": {Purpose: PurposeScreenshare}}
	b := Metadata{"s1": {Purpose: PurposeUsermedia, AudioMuted: true, Tracks: map[string]Track{"t1": {}}}}
	got := Merge(a, nil, b)
	want := Metadata{
		"s1": {Purpose: PurposeUsermedia, AudioMuted: true, Tracks: map[string]Track{"t1": {}}},
		"s2": {Purpose: PurposeScreenshare},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
	got["s1"].Tracks["t9"] = Track{}
	if _, leaked := b["s1"].Tracks["t9"]; leaked {
		t.Fatal("Merge shares track maps with its inputs")
	}
	if Merge() == nil {
		t.Fatal("Merge() is nil")
	}
}

func TestResolve(t *testing.T) {
	m := Metadata{
		"s1": {Purpose: PurposeUsermedia, Tracks: map[string]Track{"t1": {Kind: "audio"}}},
		"0":  {Purpose: PurposeScreenshare},                 // MID-keyed
		"s3": {Purpose: PurposeUsermedia, AudioMuted: true}, // no track list
		"s4": {Purpose: PurposeUsermedia, Tracks: map[string]Track{"t4": {}}},
		"s5": {Purpose: PurposeUsermedia, Tracks: map[string]Track{"t4": {}}}, // reuses t4
	}
	tests := []struct {
		name               string
		stream, track, mid string
		wantKey            string
		wantOK             bool
	}{
		{"stream and track", "s1", "t1", "0", "s1", true},
		{"mid beats a stream that does not list the track", "s3", "tX", "0", "0", true},
		{"stream without track list", "s3", "tX", "", "s3", true},
		{"mid only", "", "", "0", "0", true},
		{"track only, smallest key wins", "", "t4", "", "s4", true},
		{"unknown stream falls back to track", "nope", "t1", "7", "s1", true},
		{"nothing", "nope", "nope", "9", "", false},
		{"all empty", "", "", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, s, ok := m.Resolve(tc.stream, tc.track, tc.mid)
			if key != tc.wantKey || ok != tc.wantOK {
				t.Fatalf("Resolve(%q,%q,%q) = %q,%v; want %q,%v", tc.stream, tc.track, tc.mid, key, ok, tc.wantKey, tc.wantOK)
			}
			if ok && !reflect.DeepEqual(s, m[key]) {
				t.Fatalf("stream %#v is not m[%q]", s, key)
			}
		})
	}
}

func TestByTrack(t *testing.T) {
	m := Metadata{"b": {Tracks: map[string]Track{"t": {}}}, "a": {Tracks: map[string]Track{"t": {}}}}
	for range 20 { // map order must not matter
		if k, _, ok := m.ByTrack("t"); !ok || k != "a" {
			t.Fatalf("ByTrack = %q,%v; want a,true", k, ok)
		}
	}
	if _, _, ok := m.ByTrack(""); ok {
		t.Fatal("empty track ID matched")
	}
}
