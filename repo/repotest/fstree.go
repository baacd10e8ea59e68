package repotest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TreeOptions choose what MakeTree puts in a directory.
type TreeOptions struct {
	Seed uint64
	// Files is how many ordinary files of random sizes (0–300 KiB) to spread over the directories.
	Files int
	// Big adds one file of this many bytes of mixed random and repetitive data (several chunks).
	Big int
	// Sparse adds a sparse file of this logical size with a little data in it.
	Sparse int64
}

// MakeTree writes a tree with every kind of entry a volume may hold: empty and 1-byte files, a big file,
// a sparse file, hardlinks, symlinks (to inside, outside and nowhere), unicode, non-UTF-8 and 255-byte names,
// deep nesting, a fifo, special modes and, where the file system supports them, xattrs.
func MakeTree(t testing.TB, dir string, o TreeOptions) {
	t.Helper()
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string, data []byte, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, mode))
		must(os.Chmod(p, mode)) // umask may have trimmed it
	}
	must(os.MkdirAll(dir, 0o755))
	write("empty", nil, 0o644)
	write("one-byte", []byte{'x'}, 0o600)
	write("exec.sh", []byte("#!/bin/sh\necho hi\n"), 0o4755)
	write("unicode-ñame-日本語-🚀.txt", []byte("unicode"), 0o644)
	write("not-utf8-\xff\xfe", []byte("bytes"), 0o644)
	write(strings.Repeat("L", 255), []byte("long name"), 0o644)
	deep := filepath.Join("deep", strings.Repeat("d/", 40), "leaf")
	write(deep, []byte("deep"), 0o644)
	dirs := []string{"", "a", "a/b", "c", "c/d/e"}
	for i := range o.Files {
		size := rng.IntN(300 << 10)
		if i%4 == 0 {
			size = rng.IntN(4 << 10)
		}
		write(filepath.Join(dirs[i%len(dirs)], fmt.Sprintf("f%04d", i)), RandomData(rng, size), 0o644)
	}
	if o.Big > 0 {
		write("big.bin", RandomData(rng, o.Big), 0o644)
	}
	if o.Sparse > 0 {
		p := filepath.Join(dir, "sparse.img")
		f, err := os.Create(p)
		must(err)
		must(f.Truncate(o.Sparse))
		_, err = f.WriteAt([]byte("header"), 0)
		must(err)
		_, err = f.WriteAt(RandomData(rng, 100<<10), o.Sparse/2)
		must(err)
		must(f.Close())
	}
	must(os.Link(filepath.Join(dir, "one-byte"), filepath.Join(dir, "hardlink-to-one-byte")))
	must(os.Link(filepath.Join(dir, "one-byte"), filepath.Join(dir, "a", "second-hardlink")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "link-outside")))
	must(os.Symlink("one-byte", filepath.Join(dir, "link-inside")))
	must(os.Symlink("../../nowhere", filepath.Join(dir, "a", "link-dangling")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
	if os.Geteuid() == 0 {
		// Device nodes need privilege; as root the round trip covers them too.
		must(unix.Mknod(filepath.Join(dir, "null-device"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	}
	must(os.Mkdir(filepath.Join(dir, "private"), 0o700))
	write("private/secret", []byte("s"), 0o400)
	must(os.Mkdir(filepath.Join(dir, "sticky"), 0o1777))
	must(os.Chmod(filepath.Join(dir, "sticky"), 0o1777))
	if err := unix.Setxattr(filepath.Join(dir, "one-byte"), "user.straddle", []byte("xattr value"), 0); err == nil {
		must(unix.Setxattr(filepath.Join(dir, "a"), "user.dir", []byte{0, 1, 2}, 0))
	}
	// Fixed times, so comparisons catch a restore that forgets them.
	when := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	must(filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(p, when, when)
	}))
}

// RandomData returns n bytes, alternating runs of random and repetitive text, so both compression paths run.
func RandomData(rng *rand.Rand, n int) []byte {
	buf := make([]byte, n)
	for i := 0; i < n; {
		run := min(n-i, 1+rng.IntN(64<<10))
		if rng.IntN(2) == 0 {
			for j := range run {
				buf[i+j] = byte(rng.Uint32())
			}
		} else {
			copy(buf[i:i+run], bytes.Repeat([]byte("straddle carrier "), run/17+1))
		}
		i += run
	}
	return buf
}

// Entry is what CompareTrees looks at for one path.
type Entry struct {
	Type    fs.FileMode
	Mode    fs.FileMode
	UID     uint32
	GID     uint32
	MTime   int64
	Size    int64
	Target  string
	Xattrs  string
	Content []byte
	Link    string // for hardlinked files: the first path sharing the inode
	Rdev    uint64 // device nodes' numbers
}

// Snapshot records every entry under dir by relative path.
func Snapshot(t testing.TB, dir string) map[string]Entry {
	t.Helper()
	out := map[string]Entry{}
	inodes := map[uint64]string{}
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := Entry{Type: fi.Mode().Type(), Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			e.Size = fi.Size()
			e.MTime = st.Mtim.Nano()
			e.Content, err = os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					e.Link = first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case fi.IsDir():
			e.MTime = st.Mtim.Nano()
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Target, _ = os.Readlink(p)
		default:
			e.MTime = st.Mtim.Nano()
			e.Rdev = st.Rdev
		}
		e.Xattrs = xattrs(p)
		out[rel] = e
	}
	return out
}

func xattrs(p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var sb strings.Builder
	for _, name := range names {
		v := make([]byte, 4096)
		k, err := unix.Lgetxattr(p, name, v)
		if err != nil && !errors.Is(err, unix.ENODATA) {
			continue
		}
		fmt.Fprintf(&sb, "%s=%q;", name, v[:max(k, 0)])
	}
	return sb.String()
}

// CompareTrees fails the test for every difference between the trees at want and got, content and metadata
// alike. The roots' own entries are compared too.
func CompareTrees(t testing.TB, want, got string) {
	t.Helper()
	w, g := Snapshot(t, want), Snapshot(t, got)
	diffs := DiffSnapshots(w, g)
	for _, d := range diffs[:min(len(diffs), 20)] {
		t.Error(d)
	}
	if len(diffs) > 20 {
		t.Errorf("... and %d more differences", len(diffs)-20)
	}
}

// DiffSnapshots lists differences between two recorded trees.
func DiffSnapshots(w, g map[string]Entry) []string {
	var diffs []string
	for rel, we := range w {
		ge, ok := g[rel]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%q missing", rel))
			continue
		}
		if !bytes.Equal(we.Content, ge.Content) {
			diffs = append(diffs, fmt.Sprintf("%q: content differs (%d vs %d bytes)", rel, len(we.Content), len(ge.Content)))
		}
		we.Content, ge.Content = nil, nil
		if !reflect.DeepEqual(we, ge) {
			diffs = append(diffs, fmt.Sprintf("%q: metadata differs:\nwant %+v\n got %+v", rel, we, ge))
		}
	}
	for rel := range g {
		if _, ok := w[rel]; !ok {
			diffs = append(diffs, fmt.Sprintf("%q is extra", rel))
		}
	}
	sort.Strings(diffs)
	return diffs
}
