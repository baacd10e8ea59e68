// Package dataset generates the benchmark's data sets deterministically: the same name, scale and seed give
// the same bytes on every machine, so Straddle and restic are measured on identical data.
package dataset

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Spec describes a data set at scale 1.
type Spec struct {
	Name             string
	Files            int // number of files
	MinSize, MaxSize int // file sizes, uniform between the two
	Dirs             int // files are spread over this many directories
	// BigDir files go into one directory of their own (besides Dirs), the shape that makes one huge tree.
	BigDir int
	// LargeEvery makes every LargeEvery-th file (when set) LargeMin to LargeMax bytes instead: "mostly small".
	LargeEvery, LargeMin, LargeMax int
	// ChangeFraction is the share of files the changed incremental changes (default 0.03).
	ChangeFraction float64
}

// Specs are the data sets the benchmark knows.
var Specs = map[string]Spec{
	// Many small files, as in a database's or a CMS's volume.
	"small": {Name: "small", Files: 20000, MinSize: 1 << 10, MaxSize: 64 << 10, Dirs: 200},
	// About 1 GiB of large files.
	"mix": {Name: "mix", Files: 16, MinSize: 8 << 20, MaxSize: 120 << 20, Dirs: 2},
	// A million mostly tiny files (issue 11): 0–4 KiB, every 100th 4–64 KiB, over 1,000 directories plus one
	// directory of 100,000 entries; 1% change between incrementals.
	"files1m": {Name: "files1m", Files: 1_000_000, MinSize: 0, MaxSize: 4 << 10, Dirs: 1000, BigDir: 100_000,
		LargeEvery: 100, LargeMin: 4<<10 + 1, LargeMax: 64 << 10, ChangeFraction: 0.01},
}

// Changed is the share of files the changed incremental changes.
func (s Spec) Changed() float64 {
	if s.ChangeFraction > 0 {
		return s.ChangeFraction
	}
	return 0.03
}

// Scaled shrinks or grows a spec: file counts for sets of many files, sizes for sets of few large ones.
func (s Spec) Scaled(scale float64) Spec {
	if scale <= 0 || scale == 1 {
		return s
	}
	if s.Files >= 1000 {
		s.Files = max(10, int(float64(s.Files)*scale))
		s.Dirs = max(1, int(float64(s.Dirs)*scale))
		if s.BigDir > 0 {
			s.BigDir = max(1, int(float64(s.BigDir)*scale))
		}
	} else {
		s.MinSize = max(1<<10, int(float64(s.MinSize)*scale))
		s.MaxSize = max(s.MinSize+1, int(float64(s.MaxSize)*scale))
	}
	return s
}

// file is one file of a data set: where it goes, how big, and whether it is compressible text.
type file struct {
	path string
	size int
	text bool
	seed uint64
}

func (s Spec) files(seed uint64) []file {
	rng := rand.New(rand.NewPCG(seed, uint64(len(s.Name))))
	out := make([]file, s.Files)
	for i := range out {
		dir := fmt.Sprintf("d%04d", i%s.Dirs)
		// The first BigDir files share one directory; the rest are spread round-robin.
		if i < s.BigDir {
			dir = "big"
		}
		lo, hi := s.MinSize, s.MaxSize
		if s.LargeEvery > 0 && i%s.LargeEvery == s.LargeEvery-1 {
			lo, hi = s.LargeMin, s.LargeMax
		}
		out[i] = file{
			path: filepath.Join(dir, fmt.Sprintf("f%06d", i)),
			size: lo + rng.IntN(hi-lo+1),
			text: i%2 == 0, // half compressible, half not
			seed: rng.Uint64(),
		}
	}
	return out
}

// Generate writes the data set into dir (which must not exist yet) and returns its size in bytes.
func Generate(dir string, s Spec, seed uint64) (int64, error) {
	var total int64
	made := map[string]bool{}
	w := bufio.NewWriterSize(nil, 1<<20)
	for _, f := range s.files(seed) {
		p := filepath.Join(dir, f.path)
		if d := filepath.Dir(p); !made[d] {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return 0, err
			}
			made[d] = true
		}
		if err := writeFile(w, p, f); err != nil {
			return 0, fmt.Errorf("generate %s: %w", p, err)
		}
		total += int64(f.size)
	}
	return total, nil
}

// writeFile writes one file through w, which it resets onto the file: one buffer serves a million files.
func writeFile(w *bufio.Writer, p string, f file) error {
	out, err := os.Create(p)
	if err != nil {
		return err
	}
	w.Reset(out)
	if f.text {
		err = writeText(w, f.size, f.seed)
	} else {
		_, err = io.CopyN(w, rand.NewChaCha8(seed32(f.seed)), int64(f.size))
	}
	if err == nil {
		err = w.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func seed32(s uint64) [32]byte {
	var b [32]byte
	for i := range 4 {
		v := s * uint64(2*i+1) * 0x9E3779B97F4A7C15
		for k := range 8 {
			b[i*8+k] = byte(v >> (8 * k))
		}
	}
	return b
}

var vocabulary = []string{"GET", "POST", "PUT", "/api/v1/items", "/api/v1/users", "/healthz", "user", "session",
	"200", "201", "404", "500", "INFO", "WARN", "ERROR", "DEBUG", "db", "query", "SELECT", "FROM", "WHERE", "id",
	"order", "by", "limit", "pod", "volume", "backup", "node", "cache", "miss", "hit", "latency", "bytes", "upstream",
	"timeout", "retry", "connection", "reset", "tls", "handshake", "client", "server", "request", "response"}

// writeText writes log-like lines: compressible like real logs (about 3:1 with zstd), never repeating, so
// deduplication does not flatter either tool.
func writeText(w *bufio.Writer, size int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0x7e47))
	var line []byte
	for written := 0; written < size; {
		line = line[:0]
		line = fmt.Appendf(line, "2026-11-%02dT%02d:%02d:%02d.%06dZ ", 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1000000))
		for range 6 + rng.IntN(10) {
			line = append(line, vocabulary[rng.IntN(len(vocabulary))]...)
			line = append(line, ' ')
		}
		line = append(line, "req="...)
		line = strconv.AppendUint(line, rng.Uint64()&0xffffffff, 16)
		line = append(line, " dur="...)
		line = strconv.AppendInt(line, int64(rng.IntN(5000)), 10)
		line = append(line, "ms\n"...)
		n := min(len(line), size-written)
		if _, err := w.Write(line[:n]); err != nil {
			return err
		}
		written += n
	}
	return nil
}

// Mutate changes about fraction of the data set's files in place, deterministically, the way applications do:
// a region rewritten in the middle, data appended, or the whole file replaced. It returns the changed paths.
func Mutate(dir string, s Spec, seed uint64, fraction float64) ([]string, error) {
	files := s.files(seed)
	rng := rand.New(rand.NewPCG(seed^0xabcdef, 3))
	n := max(1, int(float64(len(files))*fraction+0.5))
	picked := rng.Perm(len(files))[:n]
	slices.Sort(picked)
	var changed []string
	for k, i := range picked {
		f := files[i]
		p := filepath.Join(dir, f.path)
		var err error
		switch k % 3 {
		case 0:
			err = rewriteMiddle(p, f.size, rng)
		case 1:
			err = appendTo(p, rng)
		default:
			f.seed = rng.Uint64()
			err = writeFile(bufio.NewWriterSize(nil, 1<<20), p, f)
		}
		if err != nil {
			return nil, fmt.Errorf("mutate %s: %w", p, err)
		}
		changed = append(changed, f.path)
	}
	return changed, nil
}

func rewriteMiddle(p string, size int, rng *rand.Rand) error {
	region := make([]byte, min(size/4+1, 256<<10))
	for i := range region {
		region[i] = byte(rng.Uint32())
	}
	out, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = out.WriteAt(region, int64(size/2))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func appendTo(p string, rng *rand.Rand) error {
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	err = writeText(w, 4<<10+rng.IntN(64<<10), rng.Uint64())
	if err == nil {
		err = w.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
