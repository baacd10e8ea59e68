package faulty

import (
	"bytes"
	"context"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

func TestRateIsSeededAndRoughlyRight(t *testing.T) {
	ctx := context.Background()
	run := func(seed uint64) []bool {
		fb := New(mem.New(), Options{Rate: 0.1, Seed: seed, Kinds: []Kind{Transient}})
		var hits []bool
		for range 2000 {
			_, err := fb.Stat(ctx, "config")
			hits = append(hits, errors.Is(err, ErrInjected))
		}
		return hits
	}
	a, b := run(1), run(1)
	n := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("call %d differs between two runs with one seed", i)
		}
		if a[i] {
			n++
		}
	}
	if n < 140 || n > 260 {
		t.Fatalf("%d of 2000 calls failed at rate 0.1", n)
	}
}

func TestFailCallAndKinds(t *testing.T) {
	ctx := context.Background()
	m := mem.New()
	fb := New(m, Options{StallFor: 20 * time.Millisecond})
	fb.FailCall(OpPut, 2, Permission)
	fb.FailCall(OpPut, 3, LostResponse)
	if err := storage.PutBytes(ctx, fb, "a", []byte("1")); err != nil {
		t.Fatalf("call 1: %v", err)
	}
	if err := storage.PutBytes(ctx, fb, "b", []byte("2")); !errors.Is(err, storage.ErrPermission) {
		t.Fatalf("call 2: %v", err)
	}
	// A lost response stores the object and still reports a reset.
	if err := storage.PutBytes(ctx, fb, "c", []byte("3")); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("call 3: %v", err)
	}
	if _, err := m.Stat(ctx, "c"); err != nil {
		t.Fatalf("lost response did not store: %v", err)
	}
	if _, err := m.Stat(ctx, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a denied put stored: %v", err)
	}
	if fb.Injected(Permission) != 1 || fb.Injected(LostResponse) != 1 || fb.TotalInjected() != 2 || fb.Calls(OpPut) != 3 {
		t.Fatalf("counters wrong: %d %d %d %d", fb.Injected(Permission), fb.Injected(LostResponse), fb.TotalInjected(), fb.Calls(OpPut))
	}
	// A stall ends by itself after StallFor.
	fb.FailNext(OpStat, Stall)
	start := time.Now()
	if _, err := fb.Stat(ctx, "a"); err != nil || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("stall: %v after %v", err, time.Since(start))
	}
}

func TestBodyFaults(t *testing.T) {
	ctx := context.Background()
	m := mem.New()
	data := bytes.Repeat([]byte("z"), 100000)
	_ = storage.PutBytes(ctx, m, "p", data)
	for kind, want := range map[Kind]error{BodyReset: syscall.ECONNRESET, BodyTruncate: io.ErrUnexpectedEOF} {
		fb := New(m, Options{})
		fb.FailNext(OpGet, kind)
		rc, err := fb.Get(ctx, "p", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, want) || len(got) >= len(data) {
			t.Fatalf("%s: read %d bytes, err %v", kind, len(got), err)
		}
	}
	// A stalled body is released by Close, as closing an HTTP response body unblocks its reader.
	fb := New(m, Options{})
	fb.FailNext(OpGet, BodyStall)
	rc, err := fb.Get(ctx, "p", 10, 1000)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := io.ReadAll(rc)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	rc.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a closed stalled body read to the end")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the stall")
	}
}
