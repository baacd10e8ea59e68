// Package id defines the 32-byte identifiers that name blobs, packs, index files and snapshots.
package id

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/minio/sha256-simd"
)

// Size is the length of an ID in bytes.
const Size = 32

// ID names an object in the repository: a keyed hash for blobs, a plain SHA-256 for files.
type ID [Size]byte

// Null is the zero ID, used where "no ID" must be said.
var Null ID

// String returns the full lowercase hex form.
func (i ID) String() string { return hex.EncodeToString(i[:]) }

// Short returns the first eight hex digits, as users see snapshot IDs.
func (i ID) Short() string { return hex.EncodeToString(i[:4]) }

// IsNull reports whether i is the zero ID.
func (i ID) IsNull() bool { return i == Null }

// MarshalText encodes the ID as hex, so IDs read naturally in JSON.
func (i ID) MarshalText() ([]byte, error) { return []byte(i.String()), nil }

// UnmarshalText decodes a full hex ID.
func (i *ID) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*i = p
	return nil
}

// Parse decodes a full 64-digit hex ID.
func Parse(s string) (ID, error) {
	var i ID
	if len(s) != 2*Size {
		return i, fmt.Errorf("invalid ID %q: want %d hex digits, got %d", s, 2*Size, len(s))
	}
	if _, err := hex.Decode(i[:], []byte(s)); err != nil {
		return i, fmt.Errorf("invalid ID %q: %w", s, err)
	}
	return i, nil
}

// Hash returns the plain SHA-256 of data, which names packs, index files and snapshots.
func Hash(data []byte) ID { return sha256.Sum256(data) }

// Random returns a random ID, for names that must never collide between writers.
func Random() ID {
	var i ID
	// crypto/rand.Read never fails on supported platforms (Go 1.24+).
	_, _ = rand.Read(i[:])
	return i
}

// Less orders IDs bytewise.
func (i ID) Less(o ID) bool { return Compare(i, o) < 0 }

// Compare returns -1, 0 or +1 as a is before, equal to or after b.
func Compare(a, b ID) int { return bytes.Compare(a[:], b[:]) }
