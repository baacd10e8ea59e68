package backup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/straddle-io/straddle/repo/tree"
)

// nodeFromStat records an entry's metadata; content, subtrees, link targets and xattrs are filled in later.
func nodeFromStat(name string, st *unix.Stat_t) (tree.Node, error) {
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
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		n.Type = tree.File
		n.Size = uint64(st.Size)
	case unix.S_IFDIR:
		n.Type = tree.Dir
	case unix.S_IFLNK:
		n.Type = tree.Symlink
	case unix.S_IFBLK:
		n.Type, n.Rdev = tree.BlockDev, st.Rdev
	case unix.S_IFCHR:
		n.Type, n.Rdev = tree.CharDev, st.Rdev
	case unix.S_IFIFO:
		n.Type = tree.FIFO
	case unix.S_IFSOCK:
		n.Type = tree.Socket
	default:
		return n, fmt.Errorf("unknown file type %o", st.Mode&unix.S_IFMT)
	}
	return n, nil
}

// sameInode reports whether an entry is the parent snapshot's, untouched: any change to content, metadata or
// xattrs updates ctime.
func sameInode(cur, parent *tree.Node) bool {
	return parent != nil && parent.Type == cur.Type && parent.Inode == cur.Inode && parent.ChangeTime == cur.ChangeTime
}

// readLinkAt reads a symlink's target relative to an open directory.
func readLinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
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
