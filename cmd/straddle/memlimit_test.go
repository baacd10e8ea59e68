package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	limited, unlimited := write("v2", "536870912\n"), write("max", "max\n")
	for _, tc := range []struct {
		in     string
		cgroup []string
		want   int64
	}{
		{"512Mi", nil, 512 << 20},
		{"1G", nil, 1e9},
		{"0", nil, 0},
		{"auto", []string{filepath.Join(dir, "missing"), limited}, 512 << 20},
		{"auto", []string{unlimited}, 0},
		{"auto", nil, 0},
	} {
		got, err := parseMemoryLimit(tc.in, tc.cgroup)
		if err != nil || got != tc.want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"lots", "-1Mi"} {
		if _, err := parseMemoryLimit(bad, nil); err == nil {
			t.Errorf("parseMemoryLimit(%q) accepted", bad)
		}
	}
}
