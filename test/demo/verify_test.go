package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/straddle-io/straddle/test/trees"
)

// TestVerifyVolume checks the demo's last check: a faithful copy passes with its file count, and one
// flipped byte in a 1 MiB file fails the check named after the volume, naming the file.
func TestVerifyVolume(t *testing.T) {
	want := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(want, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := trees.WriteMixed(want, 1); err != nil {
		t.Fatal(err)
	}
	if err := trees.WriteRandomFile(filepath.Join(want, "ibdata1"), 1<<20, 7, 0o600); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(t.TempDir(), "restored")
	if out, err := exec.Command("cp", "-a", want, got).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	files, size, err := verifyVolume("db-0/data", want, got)
	if err != nil || files != 5 || size < 1<<20 {
		t.Fatalf("verifyVolume of a faithful copy = %d files, %d bytes, %v; want 5 files, over 1 MiB, no error", files, size, err)
	}

	f, err := os.OpenFile(filepath.Join(got, "ibdata1"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 700_000); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if _, err := f.WriteAt(b, 700_000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, _, err = verifyVolume("db-0/data", want, got)
	if err == nil {
		t.Fatal("a flipped byte went unnoticed")
	}
	for _, part := range []string{`check "volume db-0/data is restored byte for byte"`, "ibdata1: content differs"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
}

// TestRunNamesMissingTools checks the demo fails before starting anything when a binary is missing, naming
// the check and the make target, and leaves no folder behind.
func TestRunNamesMissingTools(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	o := options{straddle: filepath.Join(tmp, "no-straddle"), restoreHelper: filepath.Join(tmp, "no-helper"), assets: tmp, storage: "filesystem"}
	err := run(context.Background(), o, os.Stdout)
	if err == nil {
		t.Fatal("the demo ran without its binaries")
	}
	for _, part := range []string{`check "tools are built"`, "no-straddle: run make build", "run make bin/kube-apiserver"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("the demo left %v behind", entries)
	}
	o.storage = "s3"
	if err := run(context.Background(), o, os.Stdout); err == nil || !strings.Contains(err.Error(), `-storage "s3": want filesystem or minio`) {
		t.Errorf("an unknown storage: %v", err)
	}
}
