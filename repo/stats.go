package repo

import (
	"context"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
)

// Stats describes a repository's size.
type Stats struct {
	Snapshots   int     `json:"snapshots"`
	Packs       int     `json:"packs"`
	IndexFiles  int     `json:"index_files"`
	DataBlobs   int     `json:"data_blobs"`
	TreeBlobs   int     `json:"tree_blobs"`
	StoredBytes int64   `json:"stored_bytes"` // every pack, as stored
	BlobBytes   uint64  `json:"blob_bytes"`   // indexed blobs after compression and sealing
	RawBytes    uint64  `json:"raw_bytes"`    // indexed blobs before compression: the deduplicated data
	Compression float64 `json:"compression_ratio"`
	// TotalBytes is the sum of the file bytes of every snapshot: what the repository would hold without dedup.
	TotalBytes uint64  `json:"total_bytes"`
	DedupRatio float64 `json:"dedup_ratio"`
}

// Stats measures the repository; the index must be loaded.
func (r *Repository) Stats(ctx context.Context) (*Stats, error) {
	packs, err := r.ListPacks(ctx)
	if err != nil {
		return nil, err
	}
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	s := &Stats{Snapshots: len(snaps), Packs: len(packs), IndexFiles: len(r.indexFiles)}
	for _, size := range packs {
		s.StoredBytes += size
	}
	err = r.idx.Each(func(t pack.BlobType, _ id.ID, e index.Entry) bool {
		if t == pack.DataBlob {
			s.DataBlobs++
		} else {
			s.TreeBlobs++
		}
		s.BlobBytes += uint64(e.Length)
		s.RawBytes += uint64(e.RawLength)
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, sn := range snaps {
		if sn.Summary != nil {
			s.TotalBytes += sn.Summary.BytesTotal
		}
	}
	if s.BlobBytes > 0 {
		s.Compression = float64(s.RawBytes) / float64(s.BlobBytes)
	}
	if s.RawBytes > 0 {
		s.DedupRatio = float64(s.TotalBytes) / float64(s.RawBytes)
	}
	return s, nil
}
