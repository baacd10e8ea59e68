package index

import (
	"math/rand/v2"
	"os"
	"testing"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/pack"
)

// syntheticFiles makes nFiles index files of packs of 25 blobs, both types mixed, with some blobs repeated
// across files as concurrent writers store them.
func syntheticFiles(r *rand.Rand, nFiles, packsPerFile int) []*File {
	var files []*File
	var prev []pack.Blob
	for range nFiles {
		f := &File{}
		for range packsPerFile {
			blobs := randomBlobs(r, 25, pack.BlobType(r.UintN(2)))
			if len(prev) > 0 && blobs[0].Type == prev[0].Type {
				blobs[0] = prev[0] // stored twice; one location is kept
			}
			f.Packs = append(f.Packs, PackBlobs{ID: id.Random(), Blobs: blobs})
			prev = blobs
		}
		files = append(files, f)
	}
	return files
}

func TestPagedIndexAnswersLikeTheInMemoryOne(t *testing.T) {
	files := syntheticFiles(rand.New(rand.NewPCG(9, 10)), 20, 20) // 10,000 blobs
	mem := NewBuilder()
	dir := t.TempDir()
	// 64 KiB of entries: about 1,365 blobs, so the builder spills several runs per type.
	paged := NewPagedBuilder(Paging{Budget: 64 << 10, Dir: dir})
	for _, f := range files {
		mem.AddFile(f)
		paged.AddFile(f)
	}
	want := mem.Build()
	got, err := paged.Finish()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if !got.Paged() || want.Paged() {
		t.Fatalf("Paged() = %v for the budgeted index, %v for the unbounded one", got.Paged(), want.Paged())
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("%d files left in the cache directory; the index's files are unlinked while open", len(left))
	}
	for bt := range pack.NumBlobTypes {
		if got.Len(bt) != want.Len(bt) {
			t.Fatalf("%s: Len %d paged, %d in memory", bt, got.Len(bt), want.Len(bt))
		}
	}
	n := 0
	err = want.Each(func(bt pack.BlobType, blobID id.ID, e Entry) bool {
		g, ok := got.Lookup(bt, blobID)
		if !ok || g.Length != e.Length || g.RawLength != e.RawLength {
			t.Fatalf("blob %s: paged lookup %+v, %v; in memory %+v", blobID.Short(), g, ok, e)
		}
		if got.Has(1-bt, blobID) {
			t.Fatalf("blob %s found under the other type", blobID.Short())
		}
		n++
		return true
	})
	if err != nil || n == 0 {
		t.Fatalf("Each: %v after %d blobs", err, n)
	}
	for range 1000 {
		if got.Has(pack.DataBlob, id.Random()) {
			t.Fatal("a random ID is found in the paged index")
		}
	}
	seen := 0
	if err := got.Each(func(pack.BlobType, id.ID, Entry) bool { seen++; return true }); err != nil || seen != n {
		t.Fatalf("paged Each visited %d (%v), want %d", seen, err, n)
	}
	// Blobs added after loading (a backup's new packs) are found beside the paged ones, and a blob the paged
	// part holds keeps its location.
	fresh := randomBlobs(rand.New(rand.NewPCG(11, 12)), 10, pack.DataBlob)
	old := files[0].Packs[0].Blobs[1]
	got.AddPack(id.Random(), append(fresh, old))
	for _, b := range fresh {
		if !got.Has(pack.DataBlob, b.ID) {
			t.Fatalf("blob %s added after loading is missing", b.ID.Short())
		}
	}
	if e, _ := got.Lookup(old.Type, old.ID); e.Pack != files[0].Packs[0].ID {
		t.Fatal("a paged blob added again moved to the newer pack")
	}
}

func TestPagedBuilderWithoutSpillStaysInMemory(t *testing.T) {
	b := NewPagedBuilder(Paging{Budget: 1 << 30, Dir: t.TempDir()})
	for _, f := range syntheticFiles(rand.New(rand.NewPCG(13, 14)), 2, 2) {
		b.AddFile(f)
	}
	x, err := b.Finish()
	if err != nil || x.Paged() || x.Len(pack.DataBlob)+x.Len(pack.TreeBlob) == 0 {
		t.Fatalf("Finish = paged %v, %v", x.Paged(), err)
	}
}
