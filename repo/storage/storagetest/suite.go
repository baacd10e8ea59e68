// Package storagetest is the conformance suite every storage.Backend must pass.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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
		// Object storage answers a range that starts at or after the end differently from one that only
		// runs over it; both must fail.
		for _, off := range []int64{16, 100} {
			if _, err := storage.ReadRange(ctx, be, "data/01/obj", off, 1); err == nil {
				t.Fatalf("reading 1 byte at %d of a 16-byte object succeeded", off)
			}
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
		// A sibling whose name only starts like the prefix's folder is not under it.
		if err := storage.PutBytes(ctx, be, "indexes/x", []byte("sibling")); err != nil {
			t.Fatal(err)
		}
		defer be.Delete(ctx, "indexes/x")
		if got := list(t, be, "index/"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("List(index/) with a sibling indexes/ = %v, want %v", got, want)
		}
		if err := be.List(ctx, "index/a1", func(fi storage.Info) error {
			if fi.Name != "index/a1" || fi.Size != int64(len("index/a1")) {
				return fmt.Errorf("listed %+v, want index/a1 of %d bytes", fi, len("index/a1"))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		stop := errors.New("stop")
		if err := be.List(ctx, "index/", func(storage.Info) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("List did not return the callback's error: %v", err)
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
	t.Run("LargeObject", func(t *testing.T) {
		// Larger than a pack and than S3's smallest multipart part, from a body that is not a *bytes.Reader.
		data := pseudoRandom(20<<20 + 12345)
		if err := be.Put(ctx, "data/aa/large", readerAt{data}, int64(len(data))); err != nil {
			t.Fatal(err)
		}
		got, err := storage.ReadAll(ctx, be, "data/aa/large")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ReadAll of %d bytes: got %d bytes equal=%v, %v", len(data), len(got), bytes.Equal(got, data), err)
		}
		off := int64(16<<20 - 7)
		got, err = storage.ReadRange(ctx, be, "data/aa/large", off, 1000)
		if err != nil || !bytes.Equal(got, data[off:off+1000]) {
			t.Fatalf("ReadRange across 16 MiB: %v", err)
		}
		got, err = storage.ReadRange(ctx, be, "data/aa/large", off, -1)
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("ReadRange to the end: %v", err)
		}
		if fi, err := be.Stat(ctx, "data/aa/large"); err != nil || fi.Size != int64(len(data)) {
			t.Fatalf("Stat = %+v, %v", fi, err)
		}
	})
	t.Run("FailedPutLeavesNothing", func(t *testing.T) {
		for _, size := range []int64{1 << 20, 20 << 20} {
			name := fmt.Sprintf("data/bb/failed-%d", size)
			body := failingReaderAt{data: pseudoRandom(int(size)), failAt: size / 2}
			if err := be.Put(ctx, name, body, size); err == nil {
				t.Fatalf("Put of %d bytes from a body that fails halfway succeeded", size)
			}
			if _, err := be.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("after a failed Put of %d bytes, Stat: %v; want ErrNotFound", size, err)
			}
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

// pseudoRandom returns n bytes that do not compress and are the same on every run.
func pseudoRandom(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{'s', 't', 'r', 'a', 'd', 'd', 'l', 'e'}).Read(b)
	return b
}

// readerAt hides the concrete type of a byte slice's reader, as a pack file or section would.
type readerAt struct{ data []byte }

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(r.data).ReadAt(p, off)
}

// failingReaderAt fails every read that reaches failAt, like a source file that goes bad during an upload.
type failingReaderAt struct {
	data   []byte
	failAt int64
}

var errBodyFailed = errors.New("storagetest: body read failed on purpose")

func (r failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.failAt {
		n := max(0, int(r.failAt-off))
		copy(p, r.data[off:off+int64(n)])
		return n, errBodyFailed
	}
	return copy(p, r.data[off:]), nil
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
