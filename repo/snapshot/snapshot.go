// Package snapshot defines the record of one backup: when, of what, which root tree, and what it cost.
package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/tree"
)

// ErrCorrupt means a snapshot does not decode.
var ErrCorrupt = errors.New("corrupt snapshot")

// AD is the additional data snapshots are sealed with.
var AD = []byte("straddle snapshot v1")

// Summary counts what a backup did.
type Summary struct {
	FilesNew        uint64  `json:"files_new"`
	FilesChanged    uint64  `json:"files_changed"`
	FilesUnmodified uint64  `json:"files_unmodified"`
	Dirs            uint64  `json:"dirs"`
	Others          uint64  `json:"others"`
	BytesRead       uint64  `json:"bytes_read"`
	BytesTotal      uint64  `json:"bytes_total"`
	BytesAdded      uint64  `json:"bytes_added"`
	BytesStored     uint64  `json:"bytes_stored"`
	BlobsAdded      uint64  `json:"blobs_added"`
	Warnings        uint64  `json:"warnings"`
	DurationSeconds float64 `json:"duration_seconds"`
	// StorageRetries counts the storage requests repeated after a transient failure during the backup.
	StorageRetries uint64 `json:"storage_retries"`
}

// Snapshot is one backup of one directory.
type Snapshot struct {
	ID       id.ID             `json:"-"`
	Time     time.Time         `json:"time"`
	Host     string            `json:"host"`
	Paths    []string          `json:"paths"`
	Tree     id.ID             `json:"tree"`
	Root     *tree.Node        `json:"root,omitempty"` // metadata of the backed-up directory itself
	Parent   *id.ID            `json:"parent,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
	Excludes []string          `json:"excludes,omitempty"`
	Summary  *Summary          `json:"summary,omitempty"`
}

// Encode serialises the snapshot; its ID is the hash of these bytes.
func (s *Snapshot) Encode() ([]byte, error) {
	buf, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	return buf, nil
}

// Decode parses a snapshot and checks the fields every reader relies on.
func Decode(buf []byte) (*Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(buf, &s); err != nil {
		return nil, fmt.Errorf("decode snapshot: %v: %w", err, ErrCorrupt)
	}
	if s.Tree.IsNull() {
		return nil, fmt.Errorf("snapshot has no tree: %w", ErrCorrupt)
	}
	s.ID = id.Hash(buf)
	return &s, nil
}

// Name is the storage key of a snapshot.
func Name(snapID id.ID) string { return "snapshots/" + snapID.String() }
