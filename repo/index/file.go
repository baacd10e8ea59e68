// Package index records where every blob lives: index files in storage, and the compact in-memory index
// built from them.
package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/pack"
)

// ErrCorrupt means an index file does not decode.
var ErrCorrupt = errors.New("corrupt index")

var fileMagic = []byte("SIX1")

// AD is the additional data index files are sealed with.
var AD = []byte("straddle index v1")

// PackBlobs lists the blobs of one pack.
type PackBlobs struct {
	ID    id.ID
	Blobs []pack.Blob
}

// File is the content of one index file: packs a writer stored, and the older index files it replaces (prune
// writes the new index before deleting the old, so readers may briefly see both and must ignore the old).
type File struct {
	Supersedes []id.ID
	Packs      []PackBlobs
}

// Superseded returns the IDs of the index files that any of files lists as superseded. Readers ignore those
// files: prune writes the replacement before deleting them, and may already have deleted packs they list.
func Superseded(files []*File) map[id.ID]struct{} {
	out := map[id.ID]struct{}{}
	for _, f := range files {
		for _, s := range f.Supersedes {
			out[s] = struct{}{}
		}
	}
	return out
}

// Encode serialises f compactly; offsets and lengths are varints.
func (f *File) Encode() []byte {
	buf := append([]byte(nil), fileMagic...)
	buf = binary.AppendUvarint(buf, uint64(len(f.Supersedes)))
	for _, s := range f.Supersedes {
		buf = append(buf, s[:]...)
	}
	buf = binary.AppendUvarint(buf, uint64(len(f.Packs)))
	for _, p := range f.Packs {
		buf = append(buf, p.ID[:]...)
		buf = binary.AppendUvarint(buf, uint64(len(p.Blobs)))
		for _, b := range p.Blobs {
			buf = append(buf, byte(b.Type))
			buf = append(buf, b.ID[:]...)
			buf = binary.AppendUvarint(buf, uint64(b.Offset))
			buf = binary.AppendUvarint(buf, uint64(b.Length))
			buf = binary.AppendUvarint(buf, uint64(b.RawLength))
		}
	}
	return buf
}

// DecodeFile parses an index file's plaintext, rejecting anything malformed.
func DecodeFile(buf []byte) (*File, error) {
	d := decoder{buf: buf}
	if len(buf) < len(fileMagic) || string(buf[:len(fileMagic)]) != string(fileMagic) {
		return nil, fmt.Errorf("index file has no magic: %w", ErrCorrupt)
	}
	d.buf = d.buf[len(fileMagic):]
	f := &File{}
	n := d.count(id.Size)
	for range n {
		f.Supersedes = append(f.Supersedes, d.id())
	}
	np := d.count(id.Size + 1)
	f.Packs = make([]PackBlobs, 0, np)
	for range np {
		p := PackBlobs{ID: d.id()}
		nb := d.count(id.Size + 4)
		p.Blobs = make([]pack.Blob, 0, nb)
		for range nb {
			b := pack.Blob{Type: pack.BlobType(d.byte())}
			b.ID = d.id()
			b.Offset = d.u32()
			b.Length = d.u32()
			b.RawLength = d.u32()
			if d.err == nil && (b.Type >= pack.NumBlobTypes || b.Length > pack.MaxBlobSize || b.RawLength > pack.MaxBlobSize) {
				d.err = fmt.Errorf("invalid blob entry in pack %s", p.ID.Short())
			}
			p.Blobs = append(p.Blobs, b)
		}
		f.Packs = append(f.Packs, p)
	}
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.buf))
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode index: %v: %w", d.err, ErrCorrupt)
	}
	return f, nil
}

// decoder reads varint-framed fields and remembers the first error, so parsing code stays linear.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.err = errors.New("value overflows 32 bits")
		return 0
	}
	return uint32(v)
}

// count reads an element count and rejects counts the remaining bytes cannot hold, so a crafted count cannot
// make us allocate.
func (d *decoder) count(minElemSize int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.buf)/minElemSize) {
		d.err = fmt.Errorf("count %d exceeds the remaining %d bytes", v, len(d.buf))
		return 0
	}
	return int(v)
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.buf) < 1 {
		d.fail()
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) id() id.ID {
	var out id.ID
	if d.err != nil || len(d.buf) < id.Size {
		d.fail()
		return out
	}
	copy(out[:], d.buf)
	d.buf = d.buf[id.Size:]
	return out
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errors.New("unexpected end of data")
	}
}
