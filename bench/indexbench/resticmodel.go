package indexbench

import "hash/maphash"

// resticModel is a model of restic's in-memory index (internal/repository/index: Index and indexMap, as of
// restic 0.14–0.18), written from its documented layout to measure the memory that layout needs, not
// restic's code: per blob type, a chained hash table whose buckets are a []uint of entry numbers (at most
// four entries a bucket on average, doubled when exceeded), and entries of 64 bytes (the ID, the next entry's
// number, the pack's position as an int, offset, length and uncompressed length as uint32) in blocks that are
// never moved; and one 32-byte ID per pack.
type resticModel struct {
	byType [2]resticMap
	packs  []resticID
}

func newResticModel() *resticModel { return &resticModel{} }

type resticEntry struct {
	id                 resticID
	next               uint
	packIndex          int
	offset             uint32
	length             uint32
	uncompressedLength uint32
}

const (
	resticMaxLoad   = 4
	resticBlockBits = 16
)

type resticMap struct {
	buckets []uint
	n       uint
	seed    maphash.Seed
	blocks  [][]resticEntry
}

func (m *resticMap) hash(i resticID) uint {
	return uint(maphash.Bytes(m.seed, i[:])) & uint(len(m.buckets)-1)
}

func (m *resticMap) entry(n uint) *resticEntry {
	return &m.blocks[n>>resticBlockBits][n&(1<<resticBlockBits-1)]
}

func (m *resticMap) add(i resticID, packIndex int, offset, length, uncompressed uint32) {
	if m.buckets == nil {
		m.seed = maphash.MakeSeed()
		m.buckets = make([]uint, 64)
		m.alloc() // entry 0 means "none"
	} else if m.n >= resticMaxLoad*uint(len(m.buckets)) {
		m.grow()
	}
	n := m.alloc()
	e := m.entry(n)
	h := m.hash(i)
	*e = resticEntry{id: i, next: m.buckets[h], packIndex: packIndex, offset: offset, length: length, uncompressedLength: uncompressed}
	m.buckets[h] = n
	m.n++
}

// alloc returns the number of a new entry, adding a block when the last is full.
func (m *resticMap) alloc() uint {
	total := uint(0)
	if k := len(m.blocks); k > 0 {
		total = uint(k-1)<<resticBlockBits + uint(len(m.blocks[k-1]))
	}
	if len(m.blocks) == 0 || len(m.blocks[len(m.blocks)-1]) == 1<<resticBlockBits {
		m.blocks = append(m.blocks, make([]resticEntry, 0, 1<<resticBlockBits))
	}
	last := &m.blocks[len(m.blocks)-1]
	*last = append(*last, resticEntry{})
	return total
}

func (m *resticMap) grow() {
	m.buckets = make([]uint, 2*len(m.buckets))
	total := uint(len(m.blocks)-1)<<resticBlockBits + uint(len(m.blocks[len(m.blocks)-1]))
	for n := uint(1); n < total; n++ {
		e := m.entry(n)
		h := m.hash(e.id)
		e.next = m.buckets[h]
		m.buckets[h] = n
	}
}

func (m *resticMap) get(i resticID) *resticEntry {
	if m.buckets == nil {
		return nil
	}
	for n := m.buckets[m.hash(i)]; n != 0; {
		e := m.entry(n)
		if e.id == i {
			return e
		}
		n = e.next
	}
	return nil
}
