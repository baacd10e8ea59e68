package index

import (
	"slices"
	"sync"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/pack"
)

// Entry says where a blob is stored.
type Entry struct {
	Pack      id.ID
	Offset    uint32
	Length    uint32
	RawLength uint32
}

// entry is the 48-byte in-memory form: the pack is an index into Index.packs.
type entry struct {
	id        id.ID
	pack      uint32
	offset    uint32
	length    uint32
	rawLength uint32
}

// pendingMax bounds the map of recently added blobs before they are sorted into a run.
const pendingMax = 4096

// table holds the blobs of one type as a few sorted runs of geometrically shrinking size (so adding is
// amortised O(log n) and memory stays 48 bytes per blob), plus a small map for the newest additions.
type table struct {
	runs    [][]entry
	pending []entry
	pendMap map[id.ID]int32
}

// Index maps blob IDs to their place in packs. It is safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	packs   []id.ID
	packIdx map[id.ID]uint32
	tables  [pack.NumBlobTypes]table
}

// New returns an empty index.
func New() *Index {
	x := &Index{packIdx: map[id.ID]uint32{}}
	for i := range x.tables {
		x.tables[i].pendMap = map[id.ID]int32{}
	}
	return x
}

// Lookup finds a blob.
func (x *Index) Lookup(t pack.BlobType, blobID id.ID) (Entry, bool) {
	if t >= pack.NumBlobTypes {
		return Entry{}, false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.tables[t].find(blobID)
	if !ok {
		return Entry{}, false
	}
	return Entry{Pack: x.packs[e.pack], Offset: e.offset, Length: e.length, RawLength: e.rawLength}, true
}

// Has reports whether a blob is indexed.
func (x *Index) Has(t pack.BlobType, blobID id.ID) bool {
	_, ok := x.Lookup(t, blobID)
	return ok
}

// AddPack records the blobs of a stored pack; blobs already indexed keep their first location.
func (x *Index) AddPack(packID id.ID, blobs []pack.Blob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := x.packNum(packID)
	for _, b := range blobs {
		if b.Type >= pack.NumBlobTypes {
			continue
		}
		t := &x.tables[b.Type]
		if _, ok := t.find(b.ID); ok {
			continue
		}
		t.add(entry{id: b.ID, pack: p, offset: b.Offset, length: b.Length, rawLength: b.RawLength})
	}
}

func (x *Index) packNum(packID id.ID) uint32 {
	if n, ok := x.packIdx[packID]; ok {
		return n
	}
	n := uint32(len(x.packs))
	x.packs = append(x.packs, packID)
	x.packIdx[packID] = n
	return n
}

// HasPack reports whether any indexed blob lives in the pack.
func (x *Index) HasPack(packID id.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.packIdx[packID]
	return ok
}

// Len counts indexed blobs of type t.
func (x *Index) Len(t pack.BlobType) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := len(x.tables[t].pending)
	for _, r := range x.tables[t].runs {
		n += len(r)
	}
	return n
}

// Each calls fn for every indexed blob until fn returns false.
func (x *Index) Each(fn func(t pack.BlobType, blobID id.ID, e Entry) bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for t := range x.tables {
		tb := &x.tables[t]
		for _, run := range append(slices.Clone(tb.runs), tb.pending) {
			for _, e := range run {
				if !fn(pack.BlobType(t), e.id, Entry{Pack: x.packs[e.pack], Offset: e.offset, Length: e.length, RawLength: e.rawLength}) {
					return
				}
			}
		}
	}
}

func (t *table) find(blobID id.ID) (entry, bool) {
	if i, ok := t.pendMap[blobID]; ok {
		return t.pending[i], true
	}
	for _, run := range t.runs {
		i, ok := slices.BinarySearchFunc(run, blobID, func(e entry, k id.ID) int { return id.Compare(e.id, k) })
		if ok {
			return run[i], true
		}
	}
	return entry{}, false
}

func (t *table) add(e entry) {
	t.pendMap[e.id] = int32(len(t.pending))
	t.pending = append(t.pending, e)
	if len(t.pending) >= pendingMax {
		t.flush()
	}
}

// flush sorts the pending blobs into a run and merges runs while the newest is at least half the size of the
// one before, keeping O(log n) runs.
func (t *table) flush() {
	if len(t.pending) == 0 {
		return
	}
	run := slices.Clone(t.pending)
	sortEntries(run)
	t.pending = t.pending[:0]
	clear(t.pendMap)
	t.runs = append(t.runs, run)
	for n := len(t.runs); n >= 2 && len(t.runs[n-1])*2 >= len(t.runs[n-2]); n = len(t.runs) {
		merged := mergeRuns(t.runs[n-2], t.runs[n-1])
		t.runs = append(t.runs[:n-2], merged)
	}
}

func sortEntries(es []entry) {
	slices.SortFunc(es, func(a, b entry) int { return id.Compare(a.id, b.id) })
}

// mergeRuns merges two sorted runs; a blob in both keeps the older run's location.
func mergeRuns(older, newer []entry) []entry {
	out := make([]entry, 0, len(older)+len(newer))
	i, j := 0, 0
	for i < len(older) && j < len(newer) {
		switch c := id.Compare(older[i].id, newer[j].id); {
		case c < 0:
			out = append(out, older[i])
			i++
		case c > 0:
			out = append(out, newer[j])
			j++
		default:
			out = append(out, older[i])
			i++
			j++
		}
	}
	out = append(out, older[i:]...)
	return append(out, newer[j:]...)
}

// Builder loads many index files at once: it collects every entry, then sorts once, which is much faster than
// adding blob by blob.
type Builder struct {
	x       *Index
	entries [pack.NumBlobTypes][]entry
}

// NewBuilder starts an empty index.
func NewBuilder() *Builder { return &Builder{x: New()} }

// AddFile adds every pack of an index file.
func (b *Builder) AddFile(f *File) {
	for _, p := range f.Packs {
		n := b.x.packNum(p.ID)
		for _, bl := range p.Blobs {
			if bl.Type < pack.NumBlobTypes {
				b.entries[bl.Type] = append(b.entries[bl.Type], entry{id: bl.ID, pack: n, offset: bl.Offset, length: bl.Length, rawLength: bl.RawLength})
			}
		}
	}
}

// Build sorts, drops duplicate blobs (keeping one location) and returns the index.
func (b *Builder) Build() *Index {
	for t, es := range b.entries {
		if len(es) == 0 {
			continue
		}
		sortEntries(es)
		es = slices.CompactFunc(es, func(a, b entry) bool { return a.id == b.id })
		b.x.tables[t].runs = [][]entry{slices.Clip(es)}
	}
	x := b.x
	b.x = nil
	return x
}
