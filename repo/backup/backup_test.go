package backup

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/tree"
)

// readOne runs readFile on one file whose recorded metadata the test controls, as if the file changed
// between the walk and the read.
func readOne(t *testing.T, path string, node tree.Node) (*backup, error) {
	t.Helper()
	r, _ := repotest.New(t)
	b := &backup{r: r, opts: Options{Now: time.Now}}
	dj := &dirJob{nodes: []tree.Node{node}, skip: []bool{false}, done: make(chan struct{})}
	fj := &fileJob{path: path, dir: dj, idx: 0}
	fj.refs.Store(1)
	chunks := make(chan chunkJob, 100)
	err := b.readFile(context.Background(), fj, nil, chunks)
	close(chunks)
	for cj := range chunks {
		putBuf(cj.buf)
	}
	return b, err
}

func statNode(t *testing.T, path string) tree.Node {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	n, err := nodeFromStat(filepath.Base(path), &st)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFileThatGrewIsAWarning(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	_ = os.WriteFile(p, []byte("0123456789"), 0o644)
	n := statNode(t, p)
	n.Size = 4 // what the walk saw before the file grew
	b, err := readOne(t, p, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.warnings) != 1 || !strings.Contains(b.warnings[0].Err.Error(), "changed while being read") {
		t.Fatalf("warnings %v", b.warnings)
	}
}

func TestReplacedFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	_ = os.WriteFile(p, []byte("old"), 0o644)
	n := statNode(t, p)
	// Replaced by another file (another inode) after the walk.
	_ = os.Remove(p)
	_ = os.WriteFile(filepath.Join(dir, "pad"), nil, 0o644)
	_ = os.WriteFile(p, []byte("new!"), 0o644)
	if _, err := readOne(t, p, n); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("err = %v", err)
	}
	// Replaced by a symlink: never followed.
	_ = os.Remove(p)
	_ = os.Symlink("/etc/passwd", p)
	if _, err := readOne(t, p, n); err == nil {
		t.Fatal("read followed a symlink")
	}
}

// Entries whose full path exceeds PATH_MAX cannot be stat'ed by path: a real way for the walk to meet an entry
// it cannot read. Each is a warning; the rest of the volume is backed up.
func TestUnreadableEntriesAreWarningsAndTheBackupCompletes(t *testing.T) {
	src := t.TempDir()
	_ = os.WriteFile(filepath.Join(src, "ok"), []byte("fine"), 0o644)
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("n", 250)
	for range 20 { // 20 × 251 bytes > PATH_MAX (4096)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(src, name)) })

	r, _ := repotest.New(t)
	res, err := Run(context.Background(), r, Options{Path: src})
	if err != nil {
		t.Fatalf("backup failed instead of warning: %v", err)
	}
	if len(res.Warnings) == 0 || res.Summary.Warnings != uint64(len(res.Warnings)) {
		t.Fatalf("no warnings for unreadable entries: %+v", res.Summary)
	}
	if !errors.Is(res.Warnings[0].Err, unix.ENAMETOOLONG) {
		t.Errorf("warning %v, want ENAMETOOLONG", res.Warnings[0])
	}
	if res.Summary.FilesNew != 1 {
		t.Errorf("files new = %d, want the one readable file", res.Summary.FilesNew)
	}
}

func TestProgressReportsTotals(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 21, Files: 30, Big: 2 << 20})
	r, _ := repotest.New(t)
	var mu sync.Mutex
	var reports []Progress
	res, err := Run(context.Background(), r, Options{Path: src, ProgressInterval: time.Millisecond, Progress: func(p Progress) {
		mu.Lock()
		reports = append(reports, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	last := reports[len(reports)-1]
	files := res.Summary.FilesNew + res.Summary.FilesChanged + res.Summary.FilesUnmodified
	if !last.ScanDone || last.FilesDone != files || last.FilesTotal != last.FilesDone || last.BytesDone != last.BytesTotal || last.BytesTotal != res.Summary.BytesTotal {
		t.Fatalf("final progress %+v, summary %+v", last, res.Summary)
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].BytesDone < reports[i-1].BytesDone {
			t.Fatalf("progress went backwards: %+v then %+v", reports[i-1], reports[i])
		}
	}
}

// A parent tree that cannot be read is not an unreadable directory: going on would drop or silently re-read
// data, so the backup stops.
func TestDamagedParentTreeStopsTheBackup(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 22, Files: 10})
	r, be := repotest.New(t)
	first, err := Run(context.Background(), r, Options{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	// Damage every tree blob.
	r.Index().Each(func(bt pack.BlobType, _ id.ID, e index.Entry) bool {
		if bt == pack.TreeBlob {
			_ = be.Mutate(pack.Name(e.Pack), func(b []byte) []byte { b[e.Offset+e.Length/2] ^= 1; return b })
		}
		return true
	})
	r2 := repotest.Reopen(t, be)
	_, err = Run(context.Background(), r2, Options{Path: src, Parent: first.Snapshot})
	if !errors.Is(err, repo.ErrCorrupt) {
		t.Fatalf("incremental over a damaged parent: err = %v, want ErrCorrupt", err)
	}
}

// failingGets fails reads of one object that cover one offset (a ranged read of the blob there, or a read of
// the whole pack), as a storage outage during that read would.
type failingGets struct {
	storage.Backend
	name   string
	offset int64
}

var errOutage = errors.New("connection reset by peer")

func (f failingGets) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if name == f.name && off <= f.offset && (n < 0 || off+n > f.offset) {
		return nil, errOutage
	}
	return f.Backend.Get(ctx, name, off, n)
}

func TestParentTreeReadErrorStopsTheBackup(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 23, Files: 10})
	r, be := repotest.New(t)
	first, err := Run(context.Background(), r, Options{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	// The root's tree reads fine; the tree of its subdirectory "a" does not.
	root, err := r.LoadTree(context.Background(), first.Snapshot.Tree)
	if err != nil {
		t.Fatal(err)
	}
	var sub id.ID
	for _, n := range root.Nodes {
		if n.Name == "a" {
			sub = n.Subtree
		}
	}
	e, ok := r.Index().Lookup(pack.TreeBlob, sub)
	if !ok {
		t.Fatal("subtree of a not indexed")
	}
	r2 := repotest.Reopen(t, failingGets{Backend: be, name: pack.Name(e.Pack), offset: int64(e.Offset)})
	res, err := Run(context.Background(), r2, Options{Path: src, Parent: first.Snapshot})
	if !errors.Is(err, errOutage) {
		t.Fatalf("incremental while the parent's trees cannot be read: err = %v (summary %+v), want the storage error", err, res)
	}
}
