package backup

import (
	"fmt"
	"path"
	"strings"
)

// Excluder decides which paths below a backup's root are left out. The zero value excludes nothing.
type Excluder struct {
	patterns []excludePattern
}

type excludePattern struct {
	text     string
	segments []string // nil for a base-name pattern
	base     string   // the pattern of a base-name pattern
	dirOnly  bool
}

// NewExcluder compiles patterns with the semantics documented on Options.Excludes; an invalid pattern is an
// error that names it.
func NewExcluder(patterns []string) (*Excluder, error) {
	e := &Excluder{}
	for _, p := range patterns {
		ep, err := compileExclude(p)
		if err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
		}
		e.patterns = append(e.patterns, ep)
	}
	return e, nil
}

func compileExclude(p string) (excludePattern, error) {
	ep := excludePattern{text: p}
	s := strings.TrimPrefix(p, "./")
	if strings.HasSuffix(s, "/") {
		ep.dirOnly = true
		s = strings.TrimRight(s, "/")
	}
	anchored := strings.Contains(s, "/")
	s = strings.TrimPrefix(s, "/")
	if s == "" {
		return ep, fmt.Errorf("empty pattern")
	}
	segs := strings.Split(s, "/")
	for _, seg := range segs {
		switch seg {
		case "":
			return ep, fmt.Errorf("empty path segment")
		case ".", "..":
			return ep, fmt.Errorf("segment %q is not allowed: patterns are relative to the backed-up root", seg)
		}
		// path.Match checks the whole pattern's syntax whatever the name.
		if _, err := path.Match(seg, ""); err != nil {
			return ep, fmt.Errorf("segment %q: %w", seg, err)
		}
	}
	if anchored {
		ep.segments = segs
	} else {
		ep.base = segs[0]
	}
	return ep, nil
}

// Patterns returns the patterns as given.
func (e *Excluder) Patterns() []string {
	if e == nil {
		return nil
	}
	out := make([]string, len(e.patterns))
	for i, p := range e.patterns {
		out[i] = p.text
	}
	return out
}

// Excluded reports whether rel, a slash-separated path relative to the backed-up root, is left out. isDir
// says whether it names a directory (patterns ending in "/" match only directories).
func (e *Excluder) Excluded(rel string, isDir bool) bool {
	if e == nil || len(e.patterns) == 0 || rel == "" {
		return false
	}
	var segs []string
	for _, p := range e.patterns {
		if p.dirOnly && !isDir {
			continue
		}
		if p.segments == nil {
			if ok, _ := path.Match(p.base, path.Base(rel)); ok {
				return true
			}
			continue
		}
		if segs == nil {
			segs = strings.Split(rel, "/")
		}
		if matchSegments(p.segments, segs) {
			return true
		}
	}
	return false
}

// matchSegments matches a path's segments against pattern segments, where a "**" segment stands for zero or
// more segments.
func matchSegments(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			// Try every split: "**" takes 0, 1, … of the remaining segments.
			for k := 0; k <= len(segs); k++ {
				if matchSegments(pat[1:], segs[k:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], segs[0]); !ok {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}
