package index

import (
	"os"
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
	// paged holds the loaded index on disk when it did not fit its memory budget (see Paging); blobs added
	// later go to runs and pending as usual.
	paged *pagedRun
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
	if p := x.tables[t].paged; p != nil {
		n += p.n
	}
	return n
}

// Paged reports whether part of the index lives in sorted files on disk rather than in memory.
func (x *Index) Paged() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for t := range x.tables {
		if x.tables[t].paged != nil {
			return true
		}
	}
	return false
}

// Close releases the files of a paged index; an index in memory needs no Close.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	var first error
	for t := range x.tables {
		if p := x.tables[t].paged; p != nil {
			if err := p.close(); err != nil && first == nil {
				first = err
			}
			x.tables[t].paged = nil
		}
	}
	return first
}

// Each calls fn for every indexed blob until fn returns false. It fails only when a paged index cannot be
// read back from its cache file.
func (x *Index) Each(fn func(t pack.BlobType, blobID id.ID, e Entry) bool) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for t := range x.tables {
		tb := &x.tables[t]
		call := func(e entry) bool {
			return fn(pack.BlobType(t), e.id, Entry{Pack: x.packs[e.pack], Offset: e.offset, Length: e.length, RawLength: e.rawLength})
		}
		for _, run := range append(slices.Clone(tb.runs), tb.pending) {
			for _, e := range run {
				if !call(e) {
					return nil
				}
			}
		}
		if tb.paged != nil {
			stopped := false
			if err := tb.paged.each(func(e entry) bool { stopped = !call(e); return !stopped }); err != nil {
				return err
			}
			if stopped {
				return nil
			}
		}
	}
	return nil
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
	if t.paged != nil {
		return t.paged.find(blobID)
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
// adding blob by blob. With a Paging budget it spills sorted runs to disk instead of growing past it.
type Builder struct {
	x       *Index
	entries [pack.NumBlobTypes][]entry
	paging  Paging
	spilled [pack.NumBlobTypes][]*os.File
	err     error
}

// NewBuilder starts an empty index that lives in memory.
func NewBuilder() *Builder { return &Builder{x: New()} }

// NewPagedBuilder starts an empty index that stays within p.Budget bytes of entries in memory, paging the
// rest to sorted files in p.Dir. Finish builds it.
func NewPagedBuilder(p Paging) *Builder { return &Builder{x: New(), paging: p} }

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
	if b.paging.Budget > 0 && b.err == nil && b.buffered() > b.paging.Budget {
		b.err = b.spill()
	}
}

// buffered is the memory the collected entries hold, counting the slices' spare capacity.
func (b *Builder) buffered() int64 {
	var n int64
	for _, es := range b.entries {
		n += int64(cap(es)) * EntryBytes
	}
	return n
}

// spill writes every type's collected entries as a sorted run to disk and empties the buffers.
func (b *Builder) spill() error {
	for t, es := range b.entries {
		if len(es) == 0 {
			continue
		}
		sortEntries(es)
		f, err := writeRun(b.paging.Dir, es)
		if err != nil {
			return err
		}
		b.spilled[t] = append(b.spilled[t], f)
		// A fresh, smaller buffer: keeping the old one would hold its capacity against the budget.
		b.entries[t] = nil
	}
	return nil
}

// Build sorts, drops duplicate blobs (keeping one location) and returns the in-memory index. Use Finish for a
// builder made by NewPagedBuilder.
func (b *Builder) Build() *Index {
	for t, es := range b.entries {
		if len(es) == 0 {
			continue
		}
		sortEntries(es)
		es = slices.CompactFunc(es, func(a, b entry) bool { return a.id == b.id })
		if cap(es)-len(es) > len(es)/64 {
			// Append's growth leaves up to a quarter spare: give it back so the index holds 48 bytes a blob.
			es = slices.Clone(es)
		}
		b.x.tables[t].runs = [][]entry{slices.Clip(es)}
		b.entries[t] = nil
	}
	x := b.x
	b.x = nil
	return x
}

// Finish builds the index: in memory when it fit the budget, else paged (every type that spilled is merged
// into one sorted file on disk). Close the index to release its files.
func (b *Builder) Finish() (*Index, error) {
	if b.err == nil {
		for t := range b.spilled {
			if len(b.spilled[t]) > 0 && len(b.entries[t]) > 0 {
				sortEntries(b.entries[t])
				var f *os.File
				if f, b.err = writeRun(b.paging.Dir, b.entries[t]); b.err != nil {
					break
				}
				b.spilled[t] = append(b.spilled[t], f)
				b.entries[t] = nil
			}
		}
	}
	for t := range b.spilled {
		if len(b.spilled[t]) == 0 {
			continue
		}
		if b.err == nil {
			b.x.tables[t].paged, b.err = mergeRunFiles(b.paging.Dir, b.spilled[t])
		} else {
			for _, f := range b.spilled[t] {
				f.Close()
			}
		}
		b.spilled[t] = nil
	}
	if b.err != nil {
		x := b.x
		b.x = nil
		_ = x.Close()
		return nil, b.err
	}
	return b.Build(), nil
}
