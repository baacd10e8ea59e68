// Package indexbench measures repository indexes at scale on synthetic index files: Straddle's index in
// memory and paged, and, as a reference, restic's index format decoded into a model of restic's in-memory
// index. Index files are generated one at a time while loading, so the process holds only the index being
// measured; generation is not timed.
package indexbench

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"time"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
)

// Shape is a synthetic repository's index: Blobs blobs in packs of BlobsPerPack, PacksPerFile packs an index
// file (as one backup session writes them).
type Shape struct {
	Blobs, BlobsPerPack, PacksPerFile int
}

// DefaultShape is 10,000,000 blobs of about 1 MiB (content-defined chunks of 512 KiB–8 MiB) in 16 MiB packs:
// 16 blobs a pack, 1,000 packs an index file.
var DefaultShape = Shape{Blobs: 10_000_000, BlobsPerPack: 16, PacksPerFile: 1000}

// Result is one index's figures.
type Result struct {
	Name  string
	Blobs int
	// HeapBytes is the live heap the loaded index holds after a collection (entries, pack table, maps).
	HeapBytes uint64
	// LoadSeconds is the time to decode every index file and build the index (no storage, no decryption);
	// LoadCPUSeconds the process's CPU time meanwhile (user+system, all threads, the collector's included),
	// the figure to read on a shared machine.
	LoadSeconds, LoadCPUSeconds float64
	// LookupsPerSecond is one goroutine's rate of lookups of blobs that are present, in random order, per
	// second of wall time; LookupsPerCPUSecond per second of the process's CPU time.
	LookupsPerSecond, LookupsPerCPUSecond float64
	// FileBytes is the size of the index files' plaintext.
	FileBytes int64
}

// BytesPerBlob is the heap the index holds per blob.
func (r Result) BytesPerBlob() float64 { return float64(r.HeapBytes) / float64(r.Blobs) }

// blobs generates the synthetic blobs of file f deterministically.
func (s Shape) file(f int) []index.PackBlobs {
	rng := rand.New(rand.NewPCG(uint64(f), 0x1dec5))
	perFile := s.BlobsPerPack * s.PacksPerFile
	left := min(perFile, s.Blobs-f*perFile)
	var packs []index.PackBlobs
	for left > 0 {
		p := index.PackBlobs{ID: randomID(rng)}
		var off uint32
		for k := range min(s.BlobsPerPack, left) {
			length := uint32(512<<10 + rng.IntN(1<<20))
			t := pack.DataBlob
			if k == 0 && f%4 == 0 {
				t = pack.TreeBlob
			}
			p.Blobs = append(p.Blobs, pack.Blob{Type: t, ID: randomID(rng), Offset: off, Length: length, RawLength: length + 100})
			off += length
		}
		left -= len(p.Blobs)
		packs = append(packs, p)
	}
	return packs
}

func (s Shape) files() int {
	perFile := s.BlobsPerPack * s.PacksPerFile
	return (s.Blobs + perFile - 1) / perFile
}

func randomID(rng *rand.Rand) id.ID {
	var out id.ID
	for k := 0; k < id.Size; k += 8 {
		v := rng.Uint64()
		for j := range 8 {
			out[k+j] = byte(v >> (8 * j))
		}
	}
	return out
}

// sample returns every n-th blob ID with its type, shuffled, for lookups.
func (s Shape) sample(every int) ([]id.ID, []pack.BlobType) {
	var ids []id.ID
	var types []pack.BlobType
	i := 0
	for f := range s.files() {
		for _, p := range s.file(f) {
			for _, b := range p.Blobs {
				if i%every == 0 {
					ids = append(ids, b.ID)
					types = append(types, b.Type)
				}
				i++
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	rng.Shuffle(len(ids), func(a, b int) { ids[a], ids[b] = ids[b], ids[a]; types[a], types[b] = types[b], types[a] })
	return ids, types
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stopwatch adds up wall and CPU time over the intervals between start and stop.
type stopwatch struct {
	wall, cpu  time.Duration
	startWall  time.Time
	cpuAtStart time.Duration
}

func (s *stopwatch) start() { s.startWall, s.cpuAtStart = time.Now(), cpuTime() }

func (s *stopwatch) stop() {
	s.wall += time.Since(s.startWall)
	s.cpu += cpuTime() - s.cpuAtStart
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Straddle loads the shape's index files (Straddle's binary format) into Straddle's index with paging p (the
// zero Paging: all in memory) and measures it.
func Straddle(s Shape, p index.Paging) (Result, error) {
	name := "Straddle, in memory"
	if p.Budget > 0 {
		name = fmt.Sprintf("Straddle, paged (budget %.4g MiB)", float64(p.Budget)/(1<<20))
	}
	ids, types := s.sample(10)
	res := Result{Name: name, Blobs: s.Blobs}
	before := liveHeap()
	b := index.NewPagedBuilder(p)
	var load, look stopwatch
	for f := range s.files() {
		buf := (&index.File{Packs: s.file(f)}).Encode()
		res.FileBytes += int64(len(buf))
		load.start()
		file, err := index.DecodeFile(buf)
		if err != nil {
			return res, err
		}
		b.AddFile(file)
		load.stop()
	}
	load.start()
	x, err := b.Finish()
	if err != nil {
		return res, err
	}
	defer x.Close()
	load.stop()
	res.LoadSeconds, res.LoadCPUSeconds = load.wall.Seconds(), load.cpu.Seconds()
	res.HeapBytes = liveHeap() - before
	look.start()
	for i, blobID := range ids {
		if _, ok := x.Lookup(types[i], blobID); !ok {
			return res, fmt.Errorf("blob %s not found", blobID.Short())
		}
	}
	look.stop()
	res.LookupsPerSecond, res.LookupsPerCPUSecond = float64(len(ids))/look.wall.Seconds(), float64(len(ids))/look.cpu.Seconds()
	runtime.KeepAlive(ids)
	return res, nil
}

// resticID is restic's ID as its index files spell it: 64 hex digits in JSON.
type resticID [32]byte

func (i resticID) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(i[:])) }

func (i *resticID) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	n, err := hex.Decode(i[:], []byte(s))
	if err != nil || n != len(i) {
		return fmt.Errorf("invalid ID %q", s)
	}
	return nil
}

// resticIndexFile is the JSON layout of restic's index files (restic's doc/design.rst, "Indexing").
type resticIndexFile struct {
	Supersedes []resticID   `json:"supersedes,omitempty"`
	Packs      []resticPack `json:"packs"`
}

// resticPack is one pack of a restic index file and the blobs it holds.
type resticPack struct {
	ID    resticID `json:"id"`
	Blobs []struct {
		ID                 resticID `json:"id"`
		Type               string   `json:"type"`
		Offset             uint     `json:"offset"`
		Length             uint     `json:"length"`
		UncompressedLength uint     `json:"uncompressed_length,omitempty"`
	} `json:"blobs"`
}

// resticJSON writes a file of the shape in restic's format.
func resticJSON(packs []index.PackBlobs) ([]byte, error) {
	var f resticIndexFile
	f.Packs = make([]resticPack, len(packs))
	for i, p := range packs {
		f.Packs[i].ID = resticID(p.ID)
		for _, b := range p.Blobs {
			t := "data"
			if b.Type == pack.TreeBlob {
				t = "tree"
			}
			f.Packs[i].Blobs = append(f.Packs[i].Blobs, struct {
				ID                 resticID `json:"id"`
				Type               string   `json:"type"`
				Offset             uint     `json:"offset"`
				Length             uint     `json:"length"`
				UncompressedLength uint     `json:"uncompressed_length,omitempty"`
			}{resticID(b.ID), t, uint(b.Offset), uint(b.Length), uint(b.RawLength)})
		}
	}
	return json.Marshal(&f)
}

// Restic decodes the shape's index files in restic's JSON format with encoding/json (as restic does) into
// resticModel, a model of restic's in-memory index, and measures it.
func Restic(s Shape) (Result, error) {
	ids, types := s.sample(10)
	res := Result{Name: "restic's format and in-memory layout (model)", Blobs: s.Blobs}
	before := liveHeap()
	m := newResticModel()
	var load, look stopwatch
	for f := range s.files() {
		buf, err := resticJSON(s.file(f))
		if err != nil {
			return res, err
		}
		res.FileBytes += int64(len(buf))
		load.start()
		var file resticIndexFile
		if err := json.Unmarshal(buf, &file); err != nil {
			return res, err
		}
		for _, p := range file.Packs {
			pi := len(m.packs)
			m.packs = append(m.packs, p.ID)
			for _, b := range p.Blobs {
				t := pack.DataBlob
				if b.Type == "tree" {
					t = pack.TreeBlob
				}
				m.byType[t].add(b.ID, pi, uint32(b.Offset), uint32(b.Length), uint32(b.UncompressedLength))
			}
		}
		load.stop()
	}
	res.LoadSeconds, res.LoadCPUSeconds = load.wall.Seconds(), load.cpu.Seconds()
	res.HeapBytes = liveHeap() - before
	look.start()
	for i, blobID := range ids {
		if m.byType[types[i]].get(resticID(blobID)) == nil {
			return res, fmt.Errorf("blob %s not found", blobID.Short())
		}
	}
	look.stop()
	res.LookupsPerSecond, res.LookupsPerCPUSecond = float64(len(ids))/look.wall.Seconds(), float64(len(ids))/look.cpu.Seconds()
	runtime.KeepAlive(m)
	return res, nil
}
