package index

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/straddle-io/straddle/repo/id"
)

// Paging bounds the memory an index built by a Builder may hold. When the entries would exceed Budget bytes,
// the builder writes them as sorted runs into Dir and merges them into one sorted file per blob type, of
// which only a fence-pointer table (the first blob ID of every page) and a few cached pages stay in memory.
type Paging struct {
	// Budget is the most bytes of entries kept in memory; zero means no limit (never paged).
	Budget int64
	// Dir is where the sorted files go (the user's cache directory); empty means the system's temp dir.
	// The files are unlinked as soon as they are open, so nothing is left behind by a killed process.
	Dir string
}

// EntryBytes is the size of one blob's entry in memory and on disk: ID, pack number, offset, length, raw length.
const EntryBytes = id.Size + 16

const (
	// pageEntries is how many entries one page holds; one fence per page costs 32/64 = 0.5 bytes a blob.
	pageEntries = 64
	pageBytes   = pageEntries * EntryBytes
	// cacheSlots bounds the page cache: 256 pages of 3 KiB.
	cacheSlots = 256
)

func putEntry(buf []byte, e entry) {
	copy(buf, e.id[:])
	binary.LittleEndian.PutUint32(buf[32:], e.pack)
	binary.LittleEndian.PutUint32(buf[36:], e.offset)
	binary.LittleEndian.PutUint32(buf[40:], e.length)
	binary.LittleEndian.PutUint32(buf[44:], e.rawLength)
}

func getEntry(buf []byte) entry {
	var e entry
	copy(e.id[:], buf)
	e.pack = binary.LittleEndian.Uint32(buf[32:])
	e.offset = binary.LittleEndian.Uint32(buf[36:])
	e.length = binary.LittleEndian.Uint32(buf[40:])
	e.rawLength = binary.LittleEndian.Uint32(buf[44:])
	return e
}

// pagedRun is a sorted file of entries with the first ID of every page in memory.
type pagedRun struct {
	f      *os.File
	n      int
	fences []id.ID

	mu    sync.Mutex
	slots [cacheSlots]cachedPage
}

type cachedPage struct {
	page int // -1 when empty
	buf  []byte
}

// tempFile creates an unlinked file in dir.
func tempFile(dir string) (*os.File, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("index cache directory: %w", err)
		}
	}
	f, err := os.CreateTemp(dir, "straddle-index-*")
	if err != nil {
		return nil, fmt.Errorf("index cache file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("index cache file: %w", err)
	}
	return f, nil
}

// writeRun writes sorted entries to a new unlinked file, for merging later.
func writeRun(dir string, es []entry) (*os.File, error) {
	f, err := tempFile(dir)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	var buf [EntryBytes]byte
	for _, e := range es {
		putEntry(buf[:], e)
		if _, err := w.Write(buf[:]); err != nil {
			f.Close()
			return nil, fmt.Errorf("write index run: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("write index run: %w", err)
	}
	return f, nil
}

// runReader reads one sorted run front to back during a merge.
type runReader struct {
	r   *bufio.Reader
	cur entry
	ok  bool
	err error
}

func (rr *runReader) next() {
	var buf [EntryBytes]byte
	if _, err := io.ReadFull(rr.r, buf[:]); err != nil {
		rr.ok = false
		if err != io.EOF {
			rr.err = fmt.Errorf("read index run: %w", err)
		}
		return
	}
	rr.cur, rr.ok = getEntry(buf[:]), true
}

// mergeRunFiles merges sorted run files into one paged run, dropping duplicate blobs (the earliest run's
// location wins, as in memory), and closes the inputs.
func mergeRunFiles(dir string, runs []*os.File) (*pagedRun, error) {
	defer func() {
		for _, f := range runs {
			f.Close()
		}
	}()
	readers := make([]*runReader, len(runs))
	for i, f := range runs {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("read index run: %w", err)
		}
		readers[i] = &runReader{r: bufio.NewReaderSize(f, 32<<10)}
		readers[i].next()
	}
	out, err := tempFile(dir)
	if err != nil {
		return nil, err
	}
	p := &pagedRun{f: out}
	w := bufio.NewWriterSize(out, 64<<10)
	var buf [EntryBytes]byte
	var last id.ID
	for {
		// A linear scan over the runs: there are few (the index size over the budget), and this is I/O-bound.
		best := -1
		for i, rr := range readers {
			if rr.err != nil {
				out.Close()
				return nil, rr.err
			}
			if rr.ok && (best < 0 || id.Compare(rr.cur.id, readers[best].cur.id) < 0) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		e := readers[best].cur
		readers[best].next()
		if p.n > 0 && e.id == last {
			continue
		}
		if p.n%pageEntries == 0 {
			p.fences = append(p.fences, e.id)
		}
		putEntry(buf[:], e)
		if _, err := w.Write(buf[:]); err != nil {
			out.Close()
			return nil, fmt.Errorf("write index: %w", err)
		}
		last = e.id
		p.n++
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return nil, fmt.Errorf("write index: %w", err)
	}
	p.fences = slices.Clip(p.fences)
	for i := range p.slots {
		p.slots[i].page = -1
	}
	return p, nil
}

// find looks a blob up: a binary search over the fences, then one page read (or taken from the cache).
func (p *pagedRun) find(blobID id.ID) (entry, bool) {
	// The page whose first ID is the last one not above blobID.
	pg, exact := slices.BinarySearchFunc(p.fences, blobID, id.Compare)
	if !exact {
		pg--
	}
	if pg < 0 {
		return entry{}, false
	}
	var buf [pageBytes]byte
	n, err := p.page(pg, buf[:])
	if err != nil {
		return entry{}, false
	}
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		var mid id.ID
		copy(mid[:], buf[m*EntryBytes:])
		switch c := id.Compare(mid, blobID); {
		case c == 0:
			return getEntry(buf[m*EntryBytes:]), true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return entry{}, false
}

// page copies page pg into buf and returns its number of entries.
func (p *pagedRun) page(pg int, buf []byte) (int, error) {
	n := min(pageEntries, p.n-pg*pageEntries)
	size := n * EntryBytes
	slot := &p.slots[pg%cacheSlots]
	p.mu.Lock()
	if slot.page == pg {
		copy(buf, slot.buf[:size])
		p.mu.Unlock()
		return n, nil
	}
	p.mu.Unlock()
	if _, err := p.f.ReadAt(buf[:size], int64(pg)*pageBytes); err != nil {
		return 0, fmt.Errorf("read index page: %w", err)
	}
	p.mu.Lock()
	if slot.buf == nil {
		slot.buf = make([]byte, pageBytes)
	}
	copy(slot.buf, buf[:size])
	slot.page = pg
	p.mu.Unlock()
	return n, nil
}

// each calls fn for every entry in ID order until fn returns false.
func (p *pagedRun) each(fn func(entry) bool) error {
	r := bufio.NewReaderSize(io.NewSectionReader(p.f, 0, int64(p.n)*EntryBytes), 64<<10)
	var buf [EntryBytes]byte
	for range p.n {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return fmt.Errorf("read index: %w", err)
		}
		if !fn(getEntry(buf[:])) {
			return nil
		}
	}
	return nil
}

func (p *pagedRun) close() error { return p.f.Close() }
