package index

import (
	"errors"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/pack"
)

func randomBlobs(r *rand.Rand, n int, t pack.BlobType) []pack.Blob {
	bs := make([]pack.Blob, n)
	for i := range bs {
		var b id.ID
		for k := range b {
			b[k] = byte(r.UintN(256))
		}
		bs[i] = pack.Blob{Type: t, ID: b, Offset: uint32(i * 100), Length: 100, RawLength: uint32(i)}
	}
	return bs
}

func TestEntryIs48Bytes(t *testing.T) {
	if s := unsafe.Sizeof(entry{}); s > 48 {
		t.Fatalf("in-memory entry is %d bytes, budget is 48", s)
	}
}

func TestAddLookup(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := New()
	var all []pack.Blob
	var packs []id.ID
	for p := range 40 { // crosses pendingMax several times, so runs are merged
		blobs := randomBlobs(r, 500, pack.BlobType(p%2))
		pid := id.Random()
		x.AddPack(pid, blobs)
		all = append(all, blobs...)
		for range blobs {
			packs = append(packs, pid)
		}
	}
	for i, b := range all {
		e, ok := x.Lookup(b.Type, b.ID)
		if !ok || e.Pack != packs[i] || e.Offset != b.Offset || e.RawLength != b.RawLength {
			t.Fatalf("blob %d: Lookup = %+v, %v", i, e, ok)
		}
		if x.Has(1-b.Type, b.ID) {
			t.Fatalf("blob %d found under the other type", i)
		}
	}
	if x.Len(pack.DataBlob)+x.Len(pack.TreeBlob) != len(all) {
		t.Fatalf("Len = %d+%d, want %d", x.Len(pack.DataBlob), x.Len(pack.TreeBlob), len(all))
	}
	if x.Has(pack.DataBlob, id.Random()) {
		t.Fatal("random ID found")
	}
	if n := len(x.tables[pack.DataBlob].runs); n > 8 {
		t.Fatalf("%d runs for 10000 blobs: merging does not keep runs logarithmic", n)
	}
	// A duplicate keeps the first location.
	x.AddPack(id.Random(), all[:1])
	if e, _ := x.Lookup(all[0].Type, all[0].ID); e.Pack != packs[0] {
		t.Fatal("duplicate blob moved to the newer pack")
	}
	seen := 0
	x.Each(func(pack.BlobType, id.ID, Entry) bool { seen++; return true })
	if seen != len(all) {
		t.Fatalf("Each visited %d, want %d", seen, len(all))
	}
}

func TestBuilderAndFileRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	f := &File{Supersedes: []id.ID{id.Random()}}
	for range 10 {
		f.Packs = append(f.Packs, PackBlobs{ID: id.Random(), Blobs: randomBlobs(r, 50, pack.DataBlob)})
	}
	f.Packs[3].Blobs = append(f.Packs[3].Blobs, f.Packs[2].Blobs[0]) // a blob in two packs
	got, err := DecodeFile(f.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Packs) != 10 || len(got.Supersedes) != 1 || got.Packs[3].Blobs[50] != f.Packs[2].Blobs[0] {
		t.Fatalf("round trip lost data: %d packs", len(got.Packs))
	}
	b := NewBuilder()
	b.AddFile(got)
	x := b.Build()
	if x.Len(pack.DataBlob) != 500 {
		t.Fatalf("Len = %d, want 500 after dropping the duplicate", x.Len(pack.DataBlob))
	}
	for _, p := range f.Packs[:3] {
		for _, bl := range p.Blobs {
			if e, ok := x.Lookup(pack.DataBlob, bl.ID); !ok || e.Length != bl.Length {
				t.Fatalf("blob %s missing", bl.ID.Short())
			}
		}
	}
}

func TestDecodeFileRejectsGarbage(t *testing.T) {
	good := (&File{Packs: []PackBlobs{{ID: id.Random(), Blobs: randomBlobs(rand.New(rand.NewPCG(5, 6)), 3, pack.TreeBlob)}}}).Encode()
	for _, bad := range [][]byte{nil, []byte("SIX1"), good[:len(good)-1], append(good, 0), []byte("SIX1\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")} {
		if _, err := DecodeFile(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeFile(%q...) = %v, want ErrCorrupt", bad[:min(len(bad), 8)], err)
		}
	}
}

func FuzzDecodeFile(f *testing.F) {
	f.Add((&File{Packs: []PackBlobs{{ID: id.Random(), Blobs: randomBlobs(rand.New(rand.NewPCG(7, 8)), 2, pack.DataBlob)}}}).Encode())
	f.Add([]byte("SIX1\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fl, err := DecodeFile(data)
		if err != nil {
			return
		}
		again, err := DecodeFile(fl.Encode())
		if err != nil || len(again.Packs) != len(fl.Packs) {
			t.Fatalf("re-encoding a decoded file fails: %v", err)
		}
	})
}
