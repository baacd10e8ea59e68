package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/tree"
)

// Options describe one restore.
type Options struct {
	// Target is the directory to restore into; it is created if missing.
	Target string
	// Include restricts the restore to these snapshot-relative paths (see CleanInclude); empty means all.
	Include []string
	// Workers is how many packs are read at once (default twice the CPUs: reads wait on storage).
	Workers int
	// Progress, when set, is called every ProgressInterval (default 1 s) and once at the end.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// Progress is a reading of a running restore.
type Progress struct {
	FilesDone, FilesTotal uint64
	BytesDone, BytesTotal uint64
}

// Warning is metadata that could not be restored (ownership without privileges, device nodes).
type Warning struct {
	Path string
	Err  error
}

func (w Warning) String() string { return fmt.Sprintf("%s: %v", w.Path, w.Err) }

// Result counts what a restore wrote.
type Result struct {
	Files, Dirs, Links, Others uint64
	Bytes                      uint64
	Warnings                   []Warning
}

type restorer struct {
	r        *repo.Repository
	root     *os.Root
	dirs     *dirCache
	opts     Options
	asRoot   bool
	bytes    atomic.Uint64
	files    atomic.Uint64
	mu       sync.Mutex
	warnings []Warning
}

// Run restores snap into opts.Target. The repository's index must be loaded. Any failure stops the restore
// with the path it concerned; a restore that returns nil wrote everything.
func Run(ctx context.Context, r *repo.Repository, snap *snapshot.Snapshot, opts Options) (*Result, error) {
	if opts.Workers <= 0 {
		opts.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = time.Second
	}
	if err := os.MkdirAll(opts.Target, 0o700); err != nil {
		return nil, fmt.Errorf("create target: %w", err)
	}
	root, err := os.OpenRoot(opts.Target)
	if err != nil {
		return nil, fmt.Errorf("open target: %w", err)
	}
	defer root.Close()
	p, err := makePlan(ctx, r, snap.Tree, opts.Include)
	if err != nil {
		return nil, err
	}
	rs := &restorer{r: r, root: root, dirs: newDirCache(root), opts: opts, asRoot: os.Geteuid() == 0}
	stop := rs.startProgress(ctx, p)
	err = rs.run(ctx, p)
	stop()
	if err != nil {
		// Files a failed restore left half-written are closed, so a long-running agent leaks nothing.
		for _, f := range p.files {
			if f.fd >= 0 {
				unix.Close(f.fd)
			}
		}
	}
	rs.dirs.close()
	if err != nil {
		return nil, err
	}
	if len(opts.Include) == 0 && snap.Root != nil {
		if err := rs.setMeta(".", snap.Root); err != nil {
			return nil, err
		}
	}
	return &Result{Files: uint64(len(p.files)), Dirs: uint64(len(p.dirs)), Links: uint64(len(p.hardlinks) + len(p.symlinks)),
		Others: uint64(len(p.specials)), Bytes: rs.bytes.Load(), Warnings: rs.warnings}, nil
}

func (rs *restorer) run(ctx context.Context, p *plan) error {
	for _, d := range p.dirs {
		if err := rs.makeDir(d.rel); err != nil {
			return err
		}
	}
	// Files with content are created when their first blob arrives; the others now.
	for _, f := range p.files {
		if f.remaining.Load() > 0 {
			continue
		}
		if err := rs.openFile(f); err != nil {
			return err
		}
		if err := rs.finishFile(f); err != nil {
			return err
		}
	}
	if err := rs.readPacks(ctx, p); err != nil {
		return err
	}
	for _, l := range p.hardlinks {
		if err := rs.clear(l.rel); err != nil {
			return err
		}
		if err := rs.root.Link(l.target, l.rel); err != nil {
			return fmt.Errorf("restore hard link %s: %w", l.rel, err)
		}
	}
	for _, s := range p.symlinks {
		if err := rs.makeSymlink(s); err != nil {
			return err
		}
	}
	for _, s := range p.specials {
		if err := rs.makeSpecial(s); err != nil {
			return err
		}
	}
	// Directories last and deepest first: setting a directory's mtime or a read-only mode before its
	// children are written would be undone or block the writes.
	for i := len(p.dirs) - 1; i >= 0; i-- {
		if err := rs.setMeta(p.dirs[i].rel, p.dirs[i].node); err != nil {
			return err
		}
	}
	return nil
}

func (rs *restorer) warn(rel string, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.warnings = append(rs.warnings, Warning{Path: rel, Err: err})
}

// clear removes whatever is at rel (file, symlink or directory), so a restore never writes through an
// existing symlink.
func (rs *restorer) clear(rel string) error {
	fi, err := rs.root.Lstat(rel)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", rel, err)
	}
	if fi.IsDir() {
		if err := rs.root.RemoveAll(rel); err != nil {
			return fmt.Errorf("restore %s: replace directory: %w", rel, err)
		}
		return nil
	}
	if err := rs.root.Remove(rel); err != nil {
		return fmt.Errorf("restore %s: replace existing file: %w", rel, err)
	}
	return nil
}

func (rs *restorer) makeDir(rel string) error {
	fi, err := rs.root.Lstat(rel)
	if err == nil && fi.IsDir() {
		return nil
	}
	if err == nil {
		if err := rs.root.Remove(rel); err != nil {
			return fmt.Errorf("restore directory %s: replace existing file: %w", rel, err)
		}
	}
	if err := rs.root.Mkdir(rel, 0o700); err != nil {
		return fmt.Errorf("restore directory %s: %w", rel, err)
	}
	return nil
}

// openFile creates the file at its final size, so blobs can be written at any offset in any order and the
// holes of sparse files stay holes. O_EXCL fails on anything already there, a symlink included; only then
// is the old entry removed.
func (rs *restorer) openFile(f *file) error {
	dir, base := path.Split(f.rel)
	d, err := rs.dirs.acquire(path.Clean("./" + dir))
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.rel, err)
	}
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(d.fd, base, flags, 0o600)
	if errors.Is(err, unix.EEXIST) {
		if err = rs.clear(f.rel); err == nil {
			fd, err = unix.Openat(d.fd, base, flags, 0o600)
		}
	}
	if err == nil {
		if err = unix.Ftruncate(fd, int64(f.node.Size)); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		rs.dirs.release(d)
		return fmt.Errorf("restore %s: %w", f.rel, err)
	}
	f.fd, f.dir = fd, d
	return nil
}

// finishFile sets the file's metadata through its descriptor and closes it.
func (rs *restorer) finishFile(f *file) error {
	err := rs.setFdMeta(f.fd, f.rel, f.node)
	if err == nil {
		err = setTimesAt(f.dir.fd, path.Base(f.rel), f.node)
	}
	if cerr := unix.Close(f.fd); err == nil && cerr != nil {
		err = cerr
	}
	rs.dirs.release(f.dir)
	f.fd, f.dir = -1, nil
	rs.files.Add(1)
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.rel, err)
	}
	return nil
}

// setTimesAt sets an entry's times relative to its directory, without following a symlink.
func setTimesAt(dirfd int, name string, n *tree.Node) error {
	ts := unix.NsecToTimespec(n.ModTime)
	if err := unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// readPacks reads every pack of the plan once, in parallel.
func (rs *restorer) readPacks(ctx context.Context, p *plan) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(rs.opts.Workers)
	for packID, blobs := range p.packs {
		g.Go(func() error { return rs.readPack(ctx, packID, blobs) })
	}
	return g.Wait()
}

// maxGap is the most unneeded bytes a ranged read skips over rather than starting a new request.
const maxGap = 4 << 20

func (rs *restorer) readPack(ctx context.Context, packID id.ID, blobs []*blobPlan) error {
	for start := 0; start < len(blobs); {
		end := start + 1
		for end < len(blobs) && int64(blobs[end].blob.Offset)-int64(blobs[end-1].blob.Offset+blobs[end-1].blob.Length) <= maxGap {
			end++
		}
		if err := rs.readSpan(ctx, packID, blobs[start:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// readSpan streams one ranged read and writes each blob as it arrives.
func (rs *restorer) readSpan(ctx context.Context, packID id.ID, blobs []*blobPlan) error {
	first, last := blobs[0].blob, blobs[len(blobs)-1].blob
	off := int64(first.Offset)
	length := int64(last.Offset+last.Length) - off
	rc, err := rs.r.Backend().Get(ctx, pack.Name(packID), off, length)
	if err != nil {
		return rs.packErr(packID, blobs, err)
	}
	defer rc.Close()
	var sealed, plain []byte
	pos := off
	for _, bp := range blobs {
		if skip := int64(bp.blob.Offset) - pos; skip > 0 {
			if _, err := io.CopyN(io.Discard, rc, skip); err != nil {
				return rs.packErr(packID, blobs, err)
			}
		}
		sealed = grow(sealed, int(bp.blob.Length))
		if _, err := io.ReadFull(rc, sealed); err != nil {
			return rs.packErr(packID, blobs, fmt.Errorf("pack is shorter than the index says: %w: %w", err, repo.ErrCorrupt))
		}
		pos = int64(bp.blob.Offset + bp.blob.Length)
		plain, err = rs.r.OpenBlob(plain[:0], sealed, bp.blob)
		if err != nil {
			return rs.packErr(packID, []*blobPlan{bp}, err)
		}
		if err := rs.writeBlob(bp, plain); err != nil {
			return err
		}
	}
	return nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// packErr names a file that needed the failed pack, so the user knows what the error costs them.
func (rs *restorer) packErr(packID id.ID, blobs []*blobPlan, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		err = fmt.Errorf("pack is missing from storage: %w", err)
	}
	return fmt.Errorf("restore %s: read pack %s: %w", blobs[0].uses[0].file.rel, packID.Short(), err)
}

func (rs *restorer) writeBlob(bp *blobPlan, plain []byte) error {
	zero := isZero(plain)
	for _, u := range bp.uses {
		f := u.file
		f.mu.Lock()
		if f.fd < 0 {
			if err := rs.openFile(f); err != nil {
				f.mu.Unlock()
				return err
			}
		}
		fd := f.fd
		f.mu.Unlock()
		// Zeros are not written: the file was created at its full size, so they read back as a hole.
		if !zero {
			if _, err := unix.Pwrite(fd, plain, u.offset); err != nil {
				return fmt.Errorf("restore %s: write at %d: %w", f.rel, u.offset, err)
			}
		}
		rs.bytes.Add(uint64(len(plain)))
		if f.remaining.Add(-1) == 0 {
			f.mu.Lock()
			err := rs.finishFile(f)
			f.mu.Unlock()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func isZero(b []byte) bool {
	var zeros [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

func (rs *restorer) makeSymlink(e entry) error {
	if err := rs.clear(e.rel); err != nil {
		return err
	}
	// The target is stored as it was, absolute or not: a symlink is data. The restore itself never follows it.
	if err := rs.root.Symlink(e.node.LinkTarget, e.rel); err != nil {
		return fmt.Errorf("restore symlink %s: %w", e.rel, err)
	}
	if rs.asRoot {
		if err := rs.root.Lchown(e.rel, int(e.node.UID), int(e.node.GID)); err != nil {
			return fmt.Errorf("restore symlink %s: %w", e.rel, err)
		}
	}
	return nil
}

func (rs *restorer) makeSpecial(e entry) error {
	var mode uint32
	switch e.node.Type {
	case tree.FIFO:
		mode = syscall.S_IFIFO
	case tree.CharDev:
		mode = syscall.S_IFCHR
	case tree.BlockDev:
		mode = syscall.S_IFBLK
	default:
		// Sockets belong to the process that listened on them; there is nothing to recreate.
		return nil
	}
	if err := rs.clear(e.rel); err != nil {
		return err
	}
	dir, err := rs.root.Open(path.Dir(e.rel))
	if err != nil {
		return fmt.Errorf("restore %s: %w", e.rel, err)
	}
	defer dir.Close()
	err = unix.Mknodat(int(dir.Fd()), path.Base(e.rel), mode|e.node.Mode&0o777, int(e.node.Rdev))
	if errors.Is(err, unix.EPERM) {
		rs.warn(e.rel, fmt.Errorf("not permitted to create a %s node here", e.node.Type))
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", e.rel, err)
	}
	return rs.setMeta(e.rel, e.node)
}

// setMeta applies ownership, mode, xattrs and times to a directory or special file.
func (rs *restorer) setMeta(rel string, n *tree.Node) error {
	flag := os.O_RDONLY | syscall.O_NOFOLLOW
	if n.Type != tree.Dir {
		flag |= unix.O_PATH
	}
	h, err := rs.root.OpenFile(rel, flag, 0)
	if err != nil {
		return fmt.Errorf("restore %s: %w", rel, err)
	}
	if n.Type == tree.Dir {
		err = rs.setFdMeta(int(h.Fd()), rel, n)
	} else {
		err = rs.chownChmod(rel, n)
	}
	h.Close()
	if err != nil {
		return err
	}
	return rs.setTimes(rel, n)
}

func (rs *restorer) chownChmod(rel string, n *tree.Node) error {
	if rs.asRoot {
		if err := rs.root.Lchown(rel, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("restore %s: %w", rel, err)
		}
	}
	if err := rs.root.Chmod(rel, os.FileMode(n.Mode&0o777)|modeBits(n.Mode)); err != nil {
		return fmt.Errorf("restore %s: %w", rel, err)
	}
	return nil
}

// setFdMeta sets ownership, mode and xattrs through an open descriptor, so nothing is resolved by name.
func (rs *restorer) setFdMeta(fd int, rel string, n *tree.Node) error {
	if rs.asRoot {
		if err := unix.Fchown(fd, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("restore %s: %w", rel, err)
		}
	}
	// chown clears setuid and setgid, so the mode comes after it.
	if err := unix.Fchmod(fd, n.Mode&0o7777); err != nil {
		return fmt.Errorf("restore %s: %w", rel, err)
	}
	for _, x := range n.Xattrs {
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
				rs.warn(rel, fmt.Errorf("xattr %s not restored: %w", x.Name, err))
				continue
			}
			return fmt.Errorf("restore %s: xattr %s: %w", rel, x.Name, err)
		}
	}
	return nil
}

func (rs *restorer) setTimes(rel string, n *tree.Node) error {
	mt := time.Unix(0, n.ModTime)
	if err := rs.root.Chtimes(rel, mt, mt); err != nil {
		return fmt.Errorf("restore %s: set times: %w", rel, err)
	}
	return nil
}

// modeBits maps the setuid, setgid and sticky bits to Go's FileMode.
func modeBits(m uint32) os.FileMode {
	var fm os.FileMode
	if m&syscall.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

func (rs *restorer) startProgress(ctx context.Context, p *plan) (stop func()) {
	if rs.opts.Progress == nil {
		return func() {}
	}
	report := func() {
		rs.opts.Progress(Progress{FilesDone: rs.files.Load(), FilesTotal: uint64(len(p.files)), BytesDone: rs.bytes.Load(), BytesTotal: p.bytes})
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(rs.opts.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				report()
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		report()
	}
}
