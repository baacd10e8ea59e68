// Package pack assembles sealed blobs into pack files and reads their headers back.
//
// A pack is: blob 1 | blob 2 | … | sealed header | header length (uint32, little endian). Each blob is sealed
// on its own, so a ranged read fetches exactly one; the header lists type, sealed length, raw length and ID of
// every blob in order, so offsets follow from the lengths.
package pack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/storage"
)

// BlobType says what a blob holds.
type BlobType uint8

// Blob types.
const (
	DataBlob BlobType = iota
	TreeBlob
	// NumBlobTypes bounds the valid types.
	NumBlobTypes
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", t)
}

// ErrCorrupt means stored bytes do not decode: truncated, altered or not ours.
var ErrCorrupt = errors.New("corrupt data")

// MaxBlobSize bounds a blob's raw and stored size; chunks are at most 8 MiB, tree blobs of huge directories
// are the larger ones.
const MaxBlobSize = 1 << 30

const (
	entrySize  = 1 + 4 + 4 + id.Size
	trailerLen = 4
)

var headerAD = []byte("straddle pack header v1")

// Blob locates one sealed blob inside a pack.
type Blob struct {
	Type      BlobType
	ID        id.ID
	Offset    uint32
	Length    uint32 // sealed length in the pack
	RawLength uint32 // plaintext length before compression
}

// Compressed reports whether the stored plaintext is zstd: raw blobs are stored at their raw length.
func (b Blob) Compressed() bool { return int(b.Length)-crypto.Overhead != int(b.RawLength) }

// Writer accumulates sealed blobs in memory until Finish.
type Writer struct {
	buf   []byte
	blobs []Blob
}

// NewWriter starts a pack in buf's storage (from a pool, so packs do not churn the heap).
func NewWriter(buf []byte) *Writer { return &Writer{buf: buf[:0]} }

// Add appends a sealed blob.
func (w *Writer) Add(t BlobType, blobID id.ID, sealed []byte, rawLen int) {
	w.blobs = append(w.blobs, Blob{Type: t, ID: blobID, Offset: uint32(len(w.buf)), Length: uint32(len(sealed)), RawLength: uint32(rawLen)})
	w.buf = append(w.buf, sealed...)
}

// Reserve records a blob of sealedLen bytes and returns the region of the pack it goes in, for the caller to
// seal into (outside any lock) before Finish. It returns false, changing nothing, when the blob does not fit
// the buffer's capacity: regions handed out must never move.
func (w *Writer) Reserve(t BlobType, blobID id.ID, rawLen, sealedLen int) ([]byte, bool) {
	start := len(w.buf)
	if start+sealedLen > cap(w.buf) {
		return nil, false
	}
	w.buf = w.buf[:start+sealedLen]
	w.blobs = append(w.blobs, Blob{Type: t, ID: blobID, Offset: uint32(start), Length: uint32(sealedLen), RawLength: uint32(rawLen)})
	return w.buf[start : start+sealedLen : start+sealedLen], true
}

// Size is the number of blob bytes so far.
func (w *Writer) Size() int { return len(w.buf) }

// Count is the number of blobs so far.
func (w *Writer) Count() int { return len(w.blobs) }

// Finish appends the sealed header and trailer and returns the pack's bytes, its ID and its blobs.
func (w *Writer) Finish(key *crypto.Key) ([]byte, id.ID, []Blob) {
	hdr := make([]byte, 0, len(w.blobs)*entrySize)
	for _, b := range w.blobs {
		hdr = append(hdr, byte(b.Type))
		hdr = binary.LittleEndian.AppendUint32(hdr, b.Length)
		hdr = binary.LittleEndian.AppendUint32(hdr, b.RawLength)
		hdr = append(hdr, b.ID[:]...)
	}
	start := len(w.buf)
	w.buf = key.Seal(w.buf, hdr, headerAD)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(w.buf)-start))
	return w.buf, id.Hash(w.buf), w.blobs
}

// Name is the storage key of a pack.
func Name(packID id.ID) string {
	s := packID.String()
	return "data/" + s[:2] + "/" + s
}

// ParseHeader decodes the blob list from tail, the last bytes of a pack of packSize bytes. It returns
// needMore > 0 when tail is too short to hold the whole header.
func ParseHeader(key *crypto.Key, tail []byte, packSize int64) (blobs []Blob, needMore int, err error) {
	if len(tail) < trailerLen || packSize < trailerLen {
		return nil, 0, fmt.Errorf("pack of %d bytes has no trailer: %w", packSize, ErrCorrupt)
	}
	hlen := int64(binary.LittleEndian.Uint32(tail[len(tail)-trailerLen:]))
	if hlen < crypto.Overhead || hlen > packSize-trailerLen {
		return nil, 0, fmt.Errorf("pack header length %d does not fit a pack of %d bytes: %w", hlen, packSize, ErrCorrupt)
	}
	if hlen+trailerLen > int64(len(tail)) {
		return nil, int(hlen + trailerLen), nil
	}
	sealed := tail[int64(len(tail))-trailerLen-hlen : len(tail)-trailerLen]
	hdr, err := key.Open(nil, sealed, headerAD)
	if err != nil {
		return nil, 0, fmt.Errorf("pack header: %w: %w", err, ErrCorrupt)
	}
	if len(hdr)%entrySize != 0 {
		return nil, 0, fmt.Errorf("pack header of %d bytes is not a whole number of entries: %w", len(hdr), ErrCorrupt)
	}
	dataEnd := packSize - trailerLen - hlen
	var off int64
	blobs = make([]Blob, 0, len(hdr)/entrySize)
	for p := hdr; len(p) > 0; p = p[entrySize:] {
		b := Blob{Type: BlobType(p[0]), Length: binary.LittleEndian.Uint32(p[1:]), RawLength: binary.LittleEndian.Uint32(p[5:]), Offset: uint32(off)}
		copy(b.ID[:], p[9:9+id.Size])
		if b.Type >= NumBlobTypes || b.Length < crypto.Overhead || b.Length > MaxBlobSize || b.RawLength > MaxBlobSize {
			return nil, 0, fmt.Errorf("pack header entry %d is invalid: %w", len(blobs), ErrCorrupt)
		}
		off += int64(b.Length)
		if off > dataEnd {
			return nil, 0, fmt.Errorf("pack header lists %d bytes of blobs in %d: %w", off, dataEnd, ErrCorrupt)
		}
		blobs = append(blobs, b)
	}
	if off != dataEnd {
		return nil, 0, fmt.Errorf("pack header lists %d bytes of blobs, pack holds %d: %w", off, dataEnd, ErrCorrupt)
	}
	return blobs, 0, nil
}

// ReadHeader fetches and decodes the header of a stored pack with one or two ranged reads.
func ReadHeader(ctx context.Context, be storage.Backend, key *crypto.Key, packID id.ID, packSize int64) ([]Blob, error) {
	name := Name(packID)
	want := min(packSize, 64<<10)
	for range 2 {
		tail, err := storage.ReadRange(ctx, be, name, packSize-want, want)
		if err != nil {
			return nil, fmt.Errorf("read header of pack %s: %w", packID.Short(), err)
		}
		blobs, need, err := ParseHeader(key, tail, packSize)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", packID.Short(), err)
		}
		if need == 0 {
			return blobs, nil
		}
		want = int64(need)
	}
	return nil, fmt.Errorf("pack %s: header keeps growing: %w", packID.Short(), ErrCorrupt)
}
