package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/straddle-io/straddle/repo/tree"
)

// nodeFromInfo records an entry's metadata from lstat; content and subtrees are filled in later.
func nodeFromInfo(name, path string, fi fs.FileInfo) (tree.Node, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return tree.Node{}, fmt.Errorf("%s: no Unix metadata", path)
	}
	n := tree.Node{
		Name:       name,
		Mode:       st.Mode & 0o7777,
		UID:        st.Uid,
		GID:        st.Gid,
		ModTime:    st.Mtim.Nano(),
		ChangeTime: st.Ctim.Nano(),
		Inode:      st.Ino,
		Device:     st.Dev,
		Links:      uint64(st.Nlink),
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		n.Type = tree.File
		n.Size = uint64(st.Size)
	case syscall.S_IFDIR:
		n.Type = tree.Dir
	case syscall.S_IFLNK:
		n.Type = tree.Symlink
		target, err := os.Readlink(path)
		if err != nil {
			return n, fmt.Errorf("read link %s: %w", path, err)
		}
		n.LinkTarget = target
	case syscall.S_IFBLK:
		n.Type, n.Rdev = tree.BlockDev, st.Rdev
	case syscall.S_IFCHR:
		n.Type, n.Rdev = tree.CharDev, st.Rdev
	case syscall.S_IFIFO:
		n.Type = tree.FIFO
	case syscall.S_IFSOCK:
		n.Type = tree.Socket
	default:
		return n, fmt.Errorf("%s: unknown file type %o", path, st.Mode&syscall.S_IFMT)
	}
	xattrs, err := readXattrs(path)
	if err != nil {
		return n, err
	}
	n.Xattrs = xattrs
	return n, nil
}

// readXattrs lists extended attributes without following symlinks. File systems without xattr support are
// not an error: there is nothing to save.
func readXattrs(path string) ([]tree.Xattr, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		if err != nil && !ignorableXattrErr(err) {
			return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
		}
		return nil, nil
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(path, buf)
	if err != nil {
		if ignorableXattrErr(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	var out []tree.Xattr
	for _, name := range bytes.Split(buf[:size], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		v, err := getXattr(path, string(name))
		if err != nil {
			if ignorableXattrErr(err) {
				continue
			}
			return nil, fmt.Errorf("read xattr %s of %s: %w", name, path, err)
		}
		out = append(out, tree.Xattr{Name: string(name), Value: v})
	}
	slices.SortFunc(out, func(a, b tree.Xattr) int { return bytes.Compare([]byte(a.Name), []byte(b.Name)) })
	return out, nil
}

func getXattr(path, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func ignorableXattrErr(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENODATA) || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// unchanged reports whether a file can reuse its parent snapshot's content without being read.
func unchanged(cur, parent *tree.Node) bool {
	return parent != nil && parent.Type == tree.File && cur.Type == tree.File &&
		cur.Size == parent.Size && cur.ModTime == parent.ModTime && cur.ChangeTime == parent.ChangeTime && cur.Inode == parent.Inode &&
		(len(parent.Content) > 0 || parent.Size == 0)
}
