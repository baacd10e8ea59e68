package restorehelper

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer lets the test read what Wait prints while Wait runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func volumes(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n, "data"), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mark(t *testing.T, dir, vol, uid string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, vol, MarkerDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, vol, MarkerDir, uid), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWaitReturnsOnlyAfterEveryMarkerAndRemovesThem(t *testing.T) {
	dir := volumes(t, "data", "logs")
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Wait(context.Background(), Options{RestoreUID: "r1", RestoresDir: dir, Poll: 5 * time.Millisecond, Report: 20 * time.Millisecond}, out)
	}()
	mark(t, dir, "data", "r1")
	// A marker of another restore does not count.
	mark(t, dir, "logs", "other")
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v with the logs volume unrestored", err)
	case <-time.After(100 * time.Millisecond):
	}
	if !strings.Contains(out.String(), "still waiting for 1 of 2 volumes: logs") {
		t.Fatalf("no report of the missing volume in %q", out.String())
	}
	mark(t, dir, "logs", "r1")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"data", "logs"} {
		if _, err := os.Stat(filepath.Join(dir, v, MarkerDir)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("marker folder of %s left behind: %v", v, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, v, "data")); err != nil || string(b) != v {
			t.Fatalf("volume data of %s disturbed: %q %v", v, b, err)
		}
	}
	if !strings.Contains(out.String(), "all 2 volumes restored") {
		t.Fatalf("output %q", out.String())
	}
}

func TestWaitTimesOutNamingTheMissingVolumes(t *testing.T) {
	dir := volumes(t, "a", "b", "c")
	mark(t, dir, "b", "r1")
	var out bytes.Buffer
	err := Wait(context.Background(), Options{RestoreUID: "r1", RestoresDir: dir, Timeout: 50 * time.Millisecond, Poll: 5 * time.Millisecond}, &out)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "volumes a, c ") {
		t.Fatalf("err %v, want a timeout naming a and c", err)
	}
	// Nothing is removed on failure: a retry of the init container sees the same state.
	if _, err := os.Stat(filepath.Join(dir, "b", MarkerDir, "r1")); err != nil {
		t.Fatal(err)
	}
}

func TestWaitStopsOnCancel(t *testing.T) {
	dir := volumes(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Wait(ctx, Options{RestoreUID: "r1", RestoresDir: dir, Poll: time.Millisecond}, &bytes.Buffer{})
	if err == nil || errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "volumes a") {
		t.Fatalf("err %v", err)
	}
}

func TestWaitInputs(t *testing.T) {
	empty := t.TempDir()
	var out bytes.Buffer
	if err := Wait(context.Background(), Options{RestoreUID: "r1", RestoresDir: empty}, &out); err != nil || !strings.Contains(out.String(), "nothing to wait for") {
		t.Fatalf("empty restores dir: %v, %q", err, out.String())
	}
	for _, uid := range []string{"", "..", "a/b", "."} {
		if err := Wait(context.Background(), Options{RestoreUID: uid, RestoresDir: empty}, &out); err == nil {
			t.Errorf("uid %q accepted", uid)
		}
	}
	if err := Wait(context.Background(), Options{RestoreUID: "r1", RestoresDir: filepath.Join(empty, "absent")}, &out); err == nil {
		t.Error("a missing restores dir was accepted")
	}
}

// An unprivileged helper over a volume root it cannot write still lets the app start.
func TestWaitSucceedsWhenTheMarkerFolderCannotBeRemoved(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root removes anything; the e2e harness runs the helper as another user")
	}
	dir := volumes(t, "data")
	mark(t, dir, "data", "r1")
	if err := os.Chmod(filepath.Join(dir, "data"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(dir, "data"), 0o755) })
	var out bytes.Buffer
	if err := Wait(context.Background(), Options{RestoreUID: "r1", RestoresDir: dir}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "marker folder .straddle stays") {
		t.Fatalf("output %q", out.String())
	}
}

// A volume root the helper may not search yet is waited on (the restore may open it), and named on timeout.
func TestWaitWaitsOnAVolumeRootItCannotSearch(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root searches anything; the e2e harness runs the helper as another user")
	}
	dir := volumes(t, "data")
	mark(t, dir, "data", "r1")
	if err := os.Chmod(filepath.Join(dir, "data"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(dir, "data"), 0o755) })
	var out bytes.Buffer
	err := Wait(context.Background(), Options{RestoreUID: "r1", RestoresDir: dir, Timeout: 300 * time.Millisecond, Poll: 50 * time.Millisecond}, &out)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "data (its root is not searchable by user") {
		t.Fatalf("error %v, want a timeout naming the volume it could not search", err)
	}
}
