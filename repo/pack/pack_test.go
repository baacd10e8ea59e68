package pack

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

func testKey(t testing.TB) *crypto.Key {
	k, err := crypto.NewKey(crypto.NewMasterKeys())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func buildPack(t testing.TB, k *crypto.Key, n int) ([]byte, id.ID, []Blob) {
	w := NewWriter(nil)
	for i := range n {
		plain := bytes.Repeat([]byte{byte(i)}, 100+i)
		w.Add(BlobType(i%2), k.BlobID(plain), k.Seal(nil, plain, nil), len(plain))
	}
	return w.Finish(k)
}

func TestRoundTrip(t *testing.T) {
	k := testKey(t)
	data, pid, blobs := buildPack(t, k, 50)
	if pid != id.Hash(data) {
		t.Fatal("pack ID is not the hash of its bytes")
	}
	be := mem.New()
	if err := storage.PutBytes(context.Background(), be, Name(pid), data); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHeader(context.Background(), be, k, pid, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(blobs) {
		t.Fatalf("%d blobs, want %d", len(got), len(blobs))
	}
	for i := range got {
		if got[i] != blobs[i] {
			t.Fatalf("blob %d = %+v, want %+v", i, got[i], blobs[i])
		}
		sealed := data[got[i].Offset : got[i].Offset+got[i].Length]
		plain, err := k.Open(nil, sealed, nil)
		if err != nil || k.BlobID(plain) != got[i].ID {
			t.Fatalf("blob %d does not open to its ID: %v", i, err)
		}
	}
}

func TestLargeHeaderNeedsSecondRead(t *testing.T) {
	k := testKey(t)
	data, pid, blobs := buildPack(t, k, 3000) // header > 64 KiB
	be := mem.New()
	_ = storage.PutBytes(context.Background(), be, Name(pid), data)
	got, err := ReadHeader(context.Background(), be, k, pid, int64(len(data)))
	if err != nil || len(got) != len(blobs) {
		t.Fatalf("got %d blobs, %v", len(got), err)
	}
}

func TestCorruptHeader(t *testing.T) {
	k := testKey(t)
	data, _, _ := buildPack(t, k, 5)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"flipped", func() []byte { d := bytes.Clone(data); d[len(d)-10] ^= 0xff; return d }()},
		{"truncated", data[:len(data)-3]},
		{"cut front", data[40:]},
		{"empty", nil},
		{"huge length", append(bytes.Clone(data[:len(data)-4]), 0xff, 0xff, 0xff, 0x7f)},
	} {
		_, need, err := ParseHeader(k, tc.data, int64(len(tc.data)))
		if need == 0 && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", tc.name, err)
		}
	}
	if _, _, err := ParseHeader(testKey(t), data, int64(len(data))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("other key: err = %v", err)
	}
}

func FuzzParseHeader(f *testing.F) {
	k, _ := crypto.NewKey(crypto.MasterKeys{})
	w := NewWriter(nil)
	w.Add(DataBlob, id.Null, k.Seal(nil, []byte("x"), nil), 1)
	data, _, _ := w.Finish(k)
	f.Add(data)
	f.Add([]byte{1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		blobs, _, err := ParseHeader(k, data, int64(len(data)))
		if err != nil {
			return
		}
		var end int64
		for _, b := range blobs {
			end = int64(b.Offset) + int64(b.Length)
		}
		if end > int64(len(data)) {
			t.Fatalf("blobs extend to %d past a pack of %d bytes", end, len(data))
		}
	})
}
