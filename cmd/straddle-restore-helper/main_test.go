package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data", ".straddle"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"bad flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"extra argument", []string{"--restore-uid", "u", "x"}, 2, "unexpected arguments"},
		{"negative timeout", []string{"--restore-uid", "u", "--timeout", "-1s"}, 2, "negative"},
		{"no uid", []string{"--restores-dir", dir}, 1, "no restore UID"},
		{"timeout", []string{"--restore-uid", "u", "--restores-dir", dir, "--timeout", "10ms"}, 1, "timed out after 10ms: the data of volumes data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.err) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut.String(), tc.code, tc.err)
			}
		})
	}
	if err := os.WriteFile(filepath.Join(dir, "data", ".straddle", "u"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--restore-uid", "u", "--restores-dir", dir}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

// The helper is its own tiny image for offline registries: it must stay standard library only.
func TestOnlyTheStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/straddle-io/straddle/cmd/straddle-restore-helper" && p != "github.com/straddle-io/straddle/restore-helper" {
			t.Errorf("the restore helper depends on %s", p)
		}
	}
}
