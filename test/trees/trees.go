// Package trees writes deterministic folder fixtures and compares folder trees byte for byte: what the e2e
// tests and `make demo` write into pod volumes and check a restore against.
package trees

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// MaxDiffs bounds how many differences Compare lists before it stops looking.
const MaxDiffs = 20

// Compare reports every difference between the trees at want and got: a path in one and not the
// other, a different type or permission bits (of the roots too), different file content byte for byte, or a
// different symlink target. nil means the trees are the same.
func Compare(want, got string) error { return CompareExcept(want, got, nil) }

// CompareExcept is Compare leaving out, on both sides, the relative paths skip says true for (a
// nil skip leaves out nothing).
func CompareExcept(want, got string, skip func(rel string) bool) error {
	wantEntries, err := Entries(want)
	if err != nil {
		return err
	}
	gotEntries, err := Entries(got)
	if err != nil {
		return err
	}
	if skip != nil {
		maps.DeleteFunc(wantEntries, func(rel string, _ fs.FileMode) bool { return skip(rel) })
		maps.DeleteFunc(gotEntries, func(rel string, _ fs.FileMode) bool { return skip(rel) })
	}
	var diffs []string
	add := func(format string, args ...any) bool {
		diffs = append(diffs, fmt.Sprintf(format, args...))
		return len(diffs) < MaxDiffs
	}
	names := make([]string, 0, len(wantEntries))
	for name := range wantEntries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		w := wantEntries[name]
		g, ok := gotEntries[name]
		if !ok {
			if !add("%s: missing", name) {
				break
			}
			continue
		}
		if d := compareEntry(name, filepath.Join(want, name), filepath.Join(got, name), w, g); d != "" && !add("%s", d) {
			break
		}
	}
	for name := range gotEntries {
		if _, ok := wantEntries[name]; !ok && len(diffs) < MaxDiffs {
			add("%s: not in the original", name)
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	return fmt.Errorf("%s and %s differ:\n  %s", want, got, strings.Join(diffs, "\n  "))
}

// Entries maps every path below root (and root itself, as ".") to its mode, without following links.
func Entries(root string) (map[string]fs.FileMode, error) {
	entries := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		entries[rel] = fi.Mode()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return entries, nil
}

func compareEntry(name, wantPath, gotPath string, w, g fs.FileMode) string {
	if w.Type() != g.Type() {
		return fmt.Sprintf("%s: type %v, restored as %v", name, w.Type(), g.Type())
	}
	if w.Perm() != g.Perm() || w&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != g&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) {
		return fmt.Sprintf("%s: mode %v, restored as %v", name, w, g)
	}
	switch {
	case w.Type() == fs.ModeSymlink:
		wl, err1 := os.Readlink(wantPath)
		gl, err2 := os.Readlink(gotPath)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Sprintf("%s: %v", name, err)
		}
		if wl != gl {
			return fmt.Sprintf("%s: link to %q, restored to %q", name, wl, gl)
		}
	case w.IsRegular():
		same, err := sameContent(wantPath, gotPath)
		if err != nil {
			return fmt.Sprintf("%s: %v", name, err)
		}
		if !same {
			return fmt.Sprintf("%s: content differs", name)
		}
	}
	return ""
}

// sameContent compares two files byte for byte, streaming, so 200 MiB files cost no memory.
func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	// Buffers as big as the file up to 1 MiB: thousands of small files must not cost 2 MiB of garbage each.
	size := int64(1 << 20)
	if fi, err := fa.Stat(); err == nil {
		size = min(size, fi.Size()+1)
	}
	ba, bb := make([]byte, size), make([]byte, size)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		endA := errors.Is(erra, io.EOF) || errors.Is(erra, io.ErrUnexpectedEOF)
		endB := errors.Is(errb, io.EOF) || errors.Is(errb, io.ErrUnexpectedEOF)
		if erra != nil && !endA {
			return false, erra
		}
		if errb != nil && !endB {
			return false, errb
		}
		if endA || endB {
			return endA == endB, nil
		}
	}
}

// Fixture writers. Content is deterministic from a seed, so a test can rewrite a volume identically or
// differently at will.

// WriteRandomFile writes size pseudo-random bytes from seed: incompressible, like media or encrypted data.
func WriteRandomFile(path string, size int64, seed uint64, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	var seedBytes [32]byte
	for i := range 8 {
		seedBytes[i] = byte(seed >> (8 * i))
	}
	src := rand.NewChaCha8(seedBytes)
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		_, _ = src.Read(buf[:n]) // ChaCha8.Read never fails
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The umask must not decide the mode a restore is compared against.
	return os.Chmod(path, perm)
}

// WriteSmallFiles writes n small text files of varied sizes (0 to about 2 KiB) in 100 per folder.
func WriteSmallFiles(dir string, n int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return err
			}
		}
		line := fmt.Sprintf("file %d of seed %d\n", i, seed)
		body := strings.Repeat(line, r.IntN(2048/len(line)+1))
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d.txt", i)), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// WriteMixed writes a small application-like tree: nested folders, a private file, an executable, a symlink
// and an empty file.
func WriteMixed(dir string, seed uint64) error {
	files := []struct {
		name string
		body string
		perm fs.FileMode
	}{
		{"config/app.yaml", fmt.Sprintf("seed: %d\nreplicas: 3\n", seed), 0o644},
		{"data/table.db", strings.Repeat(fmt.Sprintf("row %d;", seed), 5000), 0o600},
		{"bin/run.sh", "#!/bin/sh\nexec app\n", 0o755},
		{"logs/empty.log", "", 0o640},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(f.body), f.perm); err != nil {
			return err
		}
		if err := os.Chmod(p, f.perm); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o700); err != nil {
		return err
	}
	return os.Symlink("config/app.yaml", filepath.Join(dir, "current-config"))
}
