// Package storagetest is the conformance suite every storage.Backend must pass.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"

	"github.com/straddle-io/straddle/repo/storage"
)

// Run exercises be; it must start empty.
func Run(t *testing.T, be storage.Backend) {
	ctx := context.Background()
	t.Run("PutGetStat", func(t *testing.T) {
		data := []byte("0123456789abcdef")
		if err := storage.PutBytes(ctx, be, "data/01/obj", data); err != nil {
			t.Fatal(err)
		}
		got, err := storage.ReadAll(ctx, be, "data/01/obj")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
		got, err = storage.ReadRange(ctx, be, "data/01/obj", 4, 6)
		if err != nil || string(got) != "456789" {
			t.Fatalf("ReadRange = %q, %v", got, err)
		}
		got, err = storage.ReadRange(ctx, be, "data/01/obj", 10, -1)
		if err != nil || string(got) != "abcdef" {
			t.Fatalf("ReadRange to end = %q, %v", got, err)
		}
		if _, err := storage.ReadRange(ctx, be, "data/01/obj", 10, 20); err == nil {
			t.Fatal("reading past the end succeeded")
		}
		fi, err := be.Stat(ctx, "data/01/obj")
		if err != nil || fi.Size != int64(len(data)) {
			t.Fatalf("Stat = %+v, %v", fi, err)
		}
	})
	t.Run("EmptyObject", func(t *testing.T) {
		if err := storage.PutBytes(ctx, be, "locks/empty", nil); err != nil {
			t.Fatal(err)
		}
		got, err := storage.ReadAll(ctx, be, "locks/empty")
		if err != nil || len(got) != 0 {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		if _, err := be.Get(ctx, "snapshots/missing", 0, -1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get missing: %v", err)
		}
		if _, err := be.Stat(ctx, "snapshots/missing"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat missing: %v", err)
		}
		if err := be.Delete(ctx, "snapshots/missing"); err != nil {
			t.Fatalf("Delete missing: %v", err)
		}
	})
	t.Run("InvalidNames", func(t *testing.T) {
		for _, name := range []string{"", "/abs", "a/../b", "a//b", "dir/", "a\x00b"} {
			if err := storage.PutBytes(ctx, be, name, []byte("x")); err == nil {
				t.Errorf("Put(%q) succeeded", name)
			}
		}
	})
	t.Run("ListDelete", func(t *testing.T) {
		want := []string{"index/a1", "index/a2", "index/b1"}
		for _, n := range want {
			if err := storage.PutBytes(ctx, be, n, []byte(n)); err != nil {
				t.Fatal(err)
			}
		}
		if got := list(t, be, "index/"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("List(index/) = %v, want %v", got, want)
		}
		if got := list(t, be, "index/a"); fmt.Sprint(got) != fmt.Sprint(want[:2]) {
			t.Fatalf("List(index/a) = %v", got)
		}
		if got := list(t, be, "nothing/"); len(got) != 0 {
			t.Fatalf("List(nothing/) = %v", got)
		}
		for _, n := range want {
			if err := be.Delete(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		if got := list(t, be, "index/"); len(got) != 0 {
			t.Fatalf("after delete: %v", got)
		}
	})
	t.Run("ConcurrentPuts", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				data := bytes.Repeat([]byte{byte(i)}, 1<<16)
				errs <- storage.PutBytes(ctx, be, fmt.Sprintf("data/%02x/p%d", i, i), data)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := list(t, be, "data/"); len(got) < 16 {
			t.Fatalf("listed %d packs, want >= 16", len(got))
		}
	})
	t.Run("GetIsStreaming", func(t *testing.T) {
		data := bytes.Repeat([]byte("x"), 1<<20)
		if err := storage.PutBytes(ctx, be, "data/ff/big", data); err != nil {
			t.Fatal(err)
		}
		rc, err := be.Get(ctx, "data/ff/big", 1, 10)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil || len(got) != 10 {
			t.Fatalf("ranged read = %d bytes, %v", len(got), err)
		}
	})
}

func list(t *testing.T, be storage.Backend, prefix string) []string {
	t.Helper()
	var names []string
	if err := be.List(context.Background(), prefix, func(fi storage.Info) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}
