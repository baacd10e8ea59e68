package backup

import (
	"strings"
	"testing"
)

func TestExcluderMatches(t *testing.T) {
	cases := []struct {
		pattern string
		rel     string
		isDir   bool
		want    bool
	}{
		// Without "/": the base name at any depth.
		{"*.tmp", "a.tmp", false, true},
		{"*.tmp", "deep/down/b.tmp", false, true},
		{"*.tmp", "a.tmp.keep", false, false},
		{"*.tmp", "x.tmp/inside", false, false}, // the directory x.tmp itself is what matches
		{"*.tmp", "x.tmp", true, true},
		{"cache", "cache", true, true},
		{"cache", "app/cache", true, true},
		{"cache", "app/cachex", true, false},
		{"?.log", "a.log", false, true},
		{"?.log", "ab.log", false, false},
		{"[ab].bin", "b.bin", false, true},
		{"[ab].bin", "c.bin", false, false},
		// With "/": the path relative to the root.
		{"cache/**", "cache", true, true},
		{"cache/**", "cache/x", false, true},
		{"cache/**", "cache/x/y/z", false, true},
		{"cache/**", "app/cache/x", false, false},
		{"logs/*.gz", "logs/a.gz", false, true},
		{"logs/*.gz", "logs/old/a.gz", false, false},
		{"logs/*.gz", "other/logs/a.gz", false, false},
		{"/top", "top", false, true},
		{"/top", "sub/top", false, false},
		{"./top/x", "top/x", false, true},
		{"**/node_modules", "node_modules", true, true},
		{"**/node_modules", "a/b/node_modules", true, true},
		{"a/**/z", "a/z", false, true},
		{"a/**/z", "a/b/c/z", false, true},
		{"a/**/z", "a/b/c/y", false, false},
		{"a/*/z", "a/b/c/z", false, false},
		// A trailing "/" matches directories only.
		{"build/", "build", true, true},
		{"build/", "build", false, false},
		{"build/", "src/build", true, true},
		{"src/build/", "src/build", true, true},
		{"src/build/", "src/build", false, false},
	}
	for _, c := range cases {
		e, err := NewExcluder([]string{c.pattern})
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if got := e.Excluded(c.rel, c.isDir); got != c.want {
			t.Errorf("pattern %q, path %q (dir %v): excluded = %v, want %v", c.pattern, c.rel, c.isDir, got, c.want)
		}
	}
}

func TestExcluderWithoutPatternsExcludesNothing(t *testing.T) {
	var nilExcluder *Excluder
	e, _ := NewExcluder(nil)
	for _, ex := range []*Excluder{nilExcluder, e} {
		if ex.Excluded("a", false) || ex.Excluded("a/b", true) {
			t.Fatal("an empty excluder excluded a path")
		}
	}
}

func TestExcluderRejectsInvalidPatterns(t *testing.T) {
	for _, p := range []string{"", "/", "[a", "a/[", "a//b", "../x", "a/./b", "a/../b"} {
		_, err := NewExcluder([]string{"ok", p})
		if err == nil {
			t.Errorf("pattern %q accepted", p)
			continue
		}
		if !strings.Contains(err.Error(), "exclude pattern") {
			t.Errorf("pattern %q: error %q does not say which pattern", p, err)
		}
	}
}
