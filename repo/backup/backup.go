// Package backup stores a directory tree as a snapshot: walk, compare with the parent snapshot, chunk,
// deduplicate, compress, seal and upload, in one bounded pipeline.
//
//	walker ──files──▶ readers (chunk) ──chunks──▶ savers (hash, store) ──▶ file done
//	   └─────dirs (post-order)──▶ finisher (waits for a dir's files, stores its tree blob)
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic/chunker"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/tree"
)

// Options describe one backup.
type Options struct {
	// Path is the directory to back up; its contents become the snapshot's root tree.
	Path string
	Host string
	Tags map[string]string
	// Excludes are glob patterns of paths below Path to leave out; the snapshot records them. A pattern
	// without "/" matches a file or directory base name at any depth ("*.tmp"); a pattern with "/" matches
	// the slash-separated path relative to Path ("cache/**", "logs/*.gz"; a leading "/" or "./" changes
	// nothing). "*", "?" and "[...]" work as in path.Match within one segment; "**" as a whole segment
	// matches zero or more segments; a trailing "/" matches directories only. An excluded directory is
	// skipped whole, not even listed, and the totals scan for progress leaves it out too. Run rejects an
	// invalid pattern before reading anything.
	Excludes []string
	// Parent is the snapshot to compare with; unchanged files reuse its content without being read.
	Parent *snapshot.Snapshot
	// Progress, when set, is called every ProgressInterval (default 1 s) and once at the end; a scan for the
	// totals then runs alongside the backup.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Readers is how many files are read and chunked at once; Savers how many chunks are hashed, compressed
	// and sealed at once. Both default to the number of CPUs.
	Readers, Savers int
	Writer          repo.WriterOptions
	// Now is the clock for the snapshot time and durations; nil means time.Now.
	Now func() time.Time
}

// Progress is a reading of a running backup. Totals are zero until the scan is done.
type Progress struct {
	FilesDone, FilesTotal uint64
	BytesDone, BytesTotal uint64
	ScanDone              bool
	Elapsed               time.Duration
}

// Warning is a problem with one path that did not stop the backup.
type Warning struct {
	Path string
	Err  error
}

func (w Warning) String() string { return fmt.Sprintf("%s: %v", w.Path, w.Err) }

// Result is what a finished backup produced.
type Result struct {
	Snapshot *snapshot.Snapshot
	Summary  snapshot.Summary
	Warnings []Warning
}

// Run backs up opts.Path into r, whose index must be loaded.
func Run(ctx context.Context, r *repo.Repository, opts Options) (*Result, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Readers <= 0 {
		opts.Readers = runtime.GOMAXPROCS(0)
	}
	if opts.Savers <= 0 {
		opts.Savers = runtime.GOMAXPROCS(0)
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = time.Second
	}
	excl, err := NewExcluder(opts.Excludes)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("backup path: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		return nil, fmt.Errorf("backup path %s: %w", abs, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("backup path %s is not a directory", abs)
	}
	root, err := nodeFromStat("", &st)
	if err != nil {
		return nil, err
	}
	if root.Xattrs, err = readXattrs(abs); err != nil {
		return nil, err
	}
	b := &backup{r: r, opts: opts, root: abs, excl: excl, start: opts.Now(), listers: make(chan struct{}, runtime.GOMAXPROCS(0))}
	// Retries are counted by the storage wrapper for its whole life; the backup reports its own share.
	b.retriesAtStart, _ = storage.Retries(r.Backend())
	stopProgress := b.startProgress(ctx, abs)
	var rootTree id.ID
	wstats, err := r.WithWriter(ctx, opts.Writer, func(ctx context.Context, w *repo.Writer) error {
		b.w = w
		var err error
		rootTree, err = b.pipeline(ctx, abs)
		return err
	})
	stopProgress()
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	sum := b.summary(wstats)
	snap := &snapshot.Snapshot{Time: b.start.UTC(), Host: opts.Host, Paths: []string{abs}, Tree: rootTree, Root: &root, Tags: opts.Tags, Summary: &sum}
	if len(opts.Excludes) > 0 {
		snap.Excludes = slices.Clone(opts.Excludes)
	}
	if opts.Parent != nil {
		p := opts.Parent.ID
		snap.Parent = &p
	}
	// A process paused past its lock's stale timeout may find its data pruned meanwhile: a snapshot must
	// then not be saved to reference it.
	if err := lock.Verify(ctx); err != nil {
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	if _, err := r.SaveSnapshot(ctx, snap); err != nil {
		return nil, err
	}
	return &Result{Snapshot: snap, Summary: sum, Warnings: b.warnings}, nil
}

type backup struct {
	r     *repo.Repository
	w     *repo.Writer
	opts  Options
	root  string // the absolute path backed up
	excl  *Excluder
	start time.Time
	// retriesAtStart is the backend's retry count when the backup began.
	retriesAtStart uint64

	filesNew, filesChanged, filesUnmodified, dirs, others atomic.Uint64
	bytesRead, bytesDone, filesDone                       atomic.Uint64
	totalFiles, totalBytes                                atomic.Uint64
	scanDone                                              atomic.Bool

	// listers bounds how many directories are read at once.
	listers chan struct{}

	mu       sync.Mutex
	warnings []Warning
}

func (b *backup) warn(path string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.warnings = append(b.warnings, Warning{Path: path, Err: err})
}

func (b *backup) summary(ws repo.WriterStats) snapshot.Summary {
	b.mu.Lock()
	defer b.mu.Unlock()
	return snapshot.Summary{
		FilesNew: b.filesNew.Load(), FilesChanged: b.filesChanged.Load(), FilesUnmodified: b.filesUnmodified.Load(),
		Dirs: b.dirs.Load(), Others: b.others.Load(), BytesRead: b.bytesRead.Load(), BytesTotal: b.bytesDone.Load(),
		BytesAdded: ws.BytesAdded, BytesStored: ws.BytesStored, BlobsAdded: ws.BlobsAdded,
		Warnings: uint64(len(b.warnings)), DurationSeconds: b.opts.Now().Sub(b.start).Seconds(),
		StorageRetries: b.storageRetries(),
	}
}

// storageRetries is how many storage requests the backend repeated since the backup began; zero for a
// backend that does not retry.
func (b *backup) storageRetries() uint64 {
	n, ok := storage.Retries(b.r.Backend())
	if !ok || n < b.retriesAtStart {
		return 0
	}
	return n - b.retriesAtStart
}

// dirJob is a directory whose tree blob can be stored once its files are done.
type dirJob struct {
	path      string
	nodes     []tree.Node
	skip      []bool        // entries that vanished or failed, dropped when the tree is stored
	pending   atomic.Int64  // 1 while the walker lists it, plus one per file being read
	done      chan struct{} // closed when pending drops to zero
	parent    *dirJob
	parentIdx int
}

// fileJob is a file to read; its reader fills dir.nodes[idx].Content.
type fileJob struct {
	path    string
	dir     *dirJob
	idx     int
	changed bool // the parent snapshot had it with other metadata

	mu     sync.Mutex
	ids    []id.ID
	refs   atomic.Int64 // 1 while reading, plus one per chunk being saved
	failed atomic.Bool
}

// chunkJob is one chunk of a file, to be hashed and stored.
type chunkJob struct {
	file *fileJob
	n    int
	buf  *[]byte
}

func (b *backup) pipeline(ctx context.Context, root string) (id.ID, error) {
	g, ctx := errgroup.WithContext(ctx)
	files := make(chan *fileJob, 256)
	chunks := make(chan chunkJob, b.opts.Savers)
	dirs := make(chan *dirJob, 256)

	g.Go(func() error {
		defer close(files)
		defer close(dirs)
		var parentTree id.ID
		if b.opts.Parent != nil {
			parentTree = b.opts.Parent.Tree
		}
		return b.walkDir(ctx, root, b.list(ctx, root, parentTree), nil, 0, files, dirs)
	})
	var readers sync.WaitGroup
	for range b.opts.Readers {
		readers.Add(1)
		g.Go(func() error {
			defer readers.Done()
			return b.readFiles(ctx, files, chunks)
		})
	}
	go func() {
		readers.Wait()
		close(chunks)
	}()
	for range b.opts.Savers {
		g.Go(func() error { return b.saveChunks(ctx, chunks) })
	}
	var rootTree id.ID
	g.Go(func() error {
		var err error
		rootTree, err = b.finishDirs(ctx, dirs)
		return err
	})
	if err := g.Wait(); err != nil {
		// Drain what the readers left so the goroutine closing chunks exits.
		for range chunks {
		}
		return id.Null, err
	}
	return rootTree, nil
}

// listing is a directory's entries and parent tree, read ahead of the walker. A directory that cannot be
// read (err) is a warning; a parent tree that cannot be loaded (repoErr) stops the backup, since going on
// would silently re-read or drop data.
type listing struct {
	dj      *dirJob
	old     *tree.Tree
	err     error
	repoErr error
	done    chan struct{}
}

// listAhead is how many of a directory's subdirectories are listed ahead of the walker: enough to keep both
// cores in syscalls while the walker works, few enough that memory does not grow with wide trees.
const listAhead = 4

// list reads a directory and its parent tree in the background, at most b.listers at a time.
func (b *backup) list(ctx context.Context, path string, parentTree id.ID) *listing {
	l := &listing{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		select {
		case b.listers <- struct{}{}:
		case <-ctx.Done():
			l.repoErr = ctx.Err()
			return
		}
		defer func() { <-b.listers }()
		if l.old, l.repoErr = b.loadParentTree(ctx, parentTree); l.repoErr == nil {
			l.dj, l.err = b.statEntries(path, l.old)
		}
	}()
	return l
}

// walkDir takes a directory's listing in name order, queues its changed files, recurses into subdirectories
// (listing the next few ahead) and then queues the directory itself, so the finisher sees every directory
// after its children.
func (b *backup) walkDir(ctx context.Context, path string, l *listing, parent *dirJob, parentIdx int, files chan<- *fileJob, dirs chan<- *dirJob) error {
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if l.repoErr != nil {
		return l.repoErr
	}
	dj, old := l.dj, l.old
	if l.err != nil {
		if parent == nil {
			return l.err
		}
		b.warn(path, l.err)
		dj = &dirJob{}
	}
	dj.path, dj.parent, dj.parentIdx, dj.done = path, parent, parentIdx, make(chan struct{})
	dj.pending.Store(1)
	b.dirs.Add(1)

	var subdirs []int
	for i := range dj.nodes {
		if !dj.skip[i] && dj.nodes[i].Type == tree.Dir {
			subdirs = append(subdirs, i)
		}
	}
	ahead := map[int]*listing{}
	listNext := func(k int) {
		if k < len(subdirs) {
			i := subdirs[k]
			var sub id.ID
			if prev := findNode(old, dj.nodes[i].Name); prev != nil && prev.Type == tree.Dir {
				sub = prev.Subtree
			}
			ahead[i] = b.list(ctx, filepath.Join(path, dj.nodes[i].Name), sub)
		}
	}
	for k := range listAhead {
		listNext(k)
	}
	nextSub := listAhead

	for i := range dj.nodes {
		if dj.skip[i] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		node := &dj.nodes[i]
		full := filepath.Join(path, node.Name)
		switch node.Type {
		case tree.Dir:
			sub := ahead[i]
			delete(ahead, i)
			listNext(nextSub)
			nextSub++
			if err := b.walkDir(ctx, full, sub, dj, i, files, dirs); err != nil {
				return err
			}
		case tree.File:
			prev := findNode(old, node.Name)
			if unchanged(node, prev) && b.haveAll(prev.Content) {
				node.Content = prev.Content
				b.filesUnmodified.Add(1)
				b.filesDone.Add(1)
				b.bytesDone.Add(node.Size)
				continue
			}
			dj.pending.Add(1)
			select {
			case files <- &fileJob{path: full, dir: dj, idx: i, changed: prev != nil}:
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			b.others.Add(1)
		}
	}
	dj.release()
	select {
	case dirs <- dj:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// statEntries reads a directory's entries and their metadata relative to the open directory (no full path is
// resolved per entry, and a parent swapped for a symlink meanwhile cannot redirect it). The directory is
// closed before the caller recurses, so open descriptors do not grow with depth.
func (b *backup) statEntries(path string, old *tree.Tree) (*dirJob, error) {
	d, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open directory: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	slices.Sort(names)
	fd := int(d.Fd())
	dj := &dirJob{nodes: make([]tree.Node, len(names)), skip: make([]bool, len(names))}
	// Without patterns no path is excluded: skip building each entry's relative path (a million files'
	// unchanged backup spent 5% of its CPU there).
	excluding := len(b.excl.Patterns()) > 0
	for i, name := range names {
		rel := ""
		if excluding {
			rel = b.relPath(path, name)
		}
		// Excluded by name alone: not even stat'ed, so an unreadable excluded entry is no warning.
		if b.excl.Excluded(rel, false) {
			dj.skip[i] = true
			continue
		}
		if err := b.statEntry(fd, path, name, findNode(old, name), &dj.nodes[i]); err != nil {
			b.warn(filepath.Join(path, name), err)
			dj.skip[i] = true
			continue
		}
		if dj.nodes[i].Type == tree.Dir && b.excl.Excluded(rel, true) {
			dj.skip[i] = true
		}
	}
	return dj, nil
}

// relPath is the slash-separated path of name in dir, relative to the backed-up root, as excludes see it.
func (b *backup) relPath(dir, name string) string {
	rel, err := filepath.Rel(b.root, filepath.Join(dir, name))
	if err != nil {
		return name
	}
	return filepath.ToSlash(rel)
}

func (b *backup) statEntry(dirfd int, dir, name string, prev *tree.Node, node *tree.Node) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	n, err := nodeFromStat(name, &st)
	if err != nil {
		return err
	}
	if sameInode(&n, prev) {
		// Untouched since the parent snapshot: its link target and xattrs are still right.
		n.LinkTarget, n.Xattrs = prev.LinkTarget, prev.Xattrs
	} else {
		if n.Type == tree.Symlink {
			if n.LinkTarget, err = readLinkAt(dirfd, name); err != nil {
				return fmt.Errorf("read link: %w", err)
			}
		}
		if n.Xattrs, err = readXattrs(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	*node = n
	return nil
}

func (b *backup) loadParentTree(ctx context.Context, treeID id.ID) (*tree.Tree, error) {
	if treeID.IsNull() {
		return nil, nil
	}
	t, err := b.r.LoadTree(ctx, treeID)
	if errors.Is(err, repo.ErrNotFound) {
		// The parent's tree is gone (pruned or damaged): read everything below here again.
		return nil, nil
	}
	return t, err
}

func findNode(t *tree.Tree, name string) *tree.Node {
	if t == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n tree.Node, k string) int {
		switch {
		case n.Name < k:
			return -1
		case n.Name > k:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return &t.Nodes[i]
}

func (b *backup) haveAll(content []id.ID) bool {
	for _, c := range content {
		if !b.r.Index().Has(pack.DataBlob, c) {
			return false
		}
	}
	return true
}

// readFiles chunks each file and hands the chunks to the savers.
func (b *backup) readFiles(ctx context.Context, files <-chan *fileJob, chunks chan<- chunkJob) error {
	chk := chunker.New(nil, b.r.Config().Polynomial)
	for fj := range files {
		fj.refs.Store(1)
		err := b.readFile(ctx, fj, chk, chunks)
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			b.warn(fj.path, err)
			fj.failed.Store(true)
		}
		b.release(fj)
	}
	return nil
}

func (b *backup) readFile(ctx context.Context, fj *fileJob, chk *chunker.Chunker, chunks chan<- chunkJob) error {
	node := &fj.dir.nodes[fj.idx]
	f, err := os.OpenFile(fj.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st, ok := before.Sys().(*syscall.Stat_t); !ok || !before.Mode().IsRegular() || st.Ino != node.Inode {
		return errors.New("replaced by another file while the backup ran")
	}
	var read uint64
	// emit hands a chunk held in a pooled buffer to the savers, which return the buffer to the pool.
	emit := func(cb *[]byte) error {
		data := *cb
		fj.mu.Lock()
		n := len(fj.ids)
		fj.ids = append(fj.ids, id.Null)
		fj.mu.Unlock()
		fj.refs.Add(1)
		read += uint64(len(data))
		b.bytesRead.Add(uint64(len(data)))
		b.bytesDone.Add(uint64(len(data)))
		select {
		case chunks <- chunkJob{file: fj, n: n, buf: cb}:
			return nil
		case <-ctx.Done():
			fj.refs.Add(-1)
			putBuf(cb)
			return ctx.Err()
		}
	}
	if node.Size < repo.MinChunkSize {
		// Small files are one chunk whatever the chunker says: read straight into the chunk's buffer. One
		// byte more than expected tells a file that grew.
		cb := getBuf(int(node.Size) + 1)
		n, err := io.ReadFull(f, (*cb)[:node.Size+1])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			putBuf(cb)
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			putBuf(cb)
		} else {
			*cb = (*cb)[:n]
			if err := emit(cb); err != nil {
				return err
			}
		}
	} else {
		chk.Reset(f, b.r.Config().Polynomial)
		for {
			// The chunker fills a pooled buffer that goes to the savers as it is: no copy of the data.
			cb := getBuf(repo.MaxChunkSize)
			c, err := chk.Next((*cb)[:0])
			if errors.Is(err, io.EOF) {
				putBuf(cb)
				break
			}
			if err != nil {
				putBuf(cb)
				return fmt.Errorf("read: %w", err)
			}
			*cb = c.Data
			if err := emit(cb); err != nil {
				return err
			}
		}
	}
	after, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if read != node.Size || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		b.warn(fj.path, fmt.Errorf("changed while being read (%d bytes read, size was %d, is %d)", read, node.Size, after.Size()))
		node.Size = read
	}
	return nil
}

// saveChunks hashes and stores chunks, then records each chunk's ID in its file.
func (b *backup) saveChunks(ctx context.Context, chunks <-chan chunkJob) error {
	for cj := range chunks {
		data := *cj.buf
		blobID := b.r.BlobID(data)
		_, err := b.w.SaveBlobWithID(ctx, pack.DataBlob, blobID, data)
		putBuf(cj.buf)
		if err != nil {
			return err
		}
		cj.file.mu.Lock()
		cj.file.ids[cj.n] = blobID
		cj.file.mu.Unlock()
		b.release(cj.file)
	}
	return nil
}

// release drops one reference to a file job; the last one completes the file's node.
func (b *backup) release(fj *fileJob) {
	if fj.refs.Add(-1) != 0 {
		return
	}
	dj := fj.dir
	if fj.failed.Load() {
		dj.skip[fj.idx] = true
	} else {
		dj.nodes[fj.idx].Content = fj.ids
		if fj.changed {
			b.filesChanged.Add(1)
		} else {
			b.filesNew.Add(1)
		}
	}
	b.filesDone.Add(1)
	dj.release()
}

func (dj *dirJob) release() {
	if dj.pending.Add(-1) == 0 {
		close(dj.done)
	}
}

// finishDirs stores each directory's tree blob once its files are done; directories arrive children first.
func (b *backup) finishDirs(ctx context.Context, dirs <-chan *dirJob) (id.ID, error) {
	var root id.ID
	for dj := range dirs {
		select {
		case <-dj.done:
		case <-ctx.Done():
			return id.Null, ctx.Err()
		}
		t := tree.Tree{Nodes: make([]tree.Node, 0, len(dj.nodes))}
		for i := range dj.nodes {
			if !dj.skip[i] {
				t.Nodes = append(t.Nodes, dj.nodes[i])
			}
		}
		treeID, _, err := b.w.SaveBlob(ctx, pack.TreeBlob, t.Encode())
		if err != nil {
			return id.Null, fmt.Errorf("store tree of %s: %w", dj.path, err)
		}
		if dj.parent == nil {
			root = treeID
		} else {
			dj.parent.nodes[dj.parentIdx].Subtree = treeID
		}
		// The tree is stored: let the node list go.
		dj.nodes = nil
	}
	return root, nil
}

var bufPools [24]sync.Pool // by power-of-two size class

func sizeClass(n int) int {
	c := 12 // 4 KiB minimum
	for 1<<c < n {
		c++
	}
	return c
}

func getBuf(n int) *[]byte {
	c := sizeClass(n)
	if c < len(bufPools) {
		if b, ok := bufPools[c].Get().(*[]byte); ok {
			return b
		}
	}
	b := make([]byte, 0, 1<<c)
	return &b
}

func putBuf(b *[]byte) {
	if c := sizeClass(cap(*b)); c < len(bufPools) && 1<<c == cap(*b) {
		*b = (*b)[:0]
		bufPools[c].Put(b)
	}
}
