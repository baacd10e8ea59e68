// Package tree encodes directory listings as tree blobs. The encoding is binary and exact: file names are
// arbitrary bytes on Linux, which a JSON encoding would silently mangle.
package tree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/straddle-io/straddle/repo/id"
)

// ErrCorrupt means a tree blob does not decode.
var ErrCorrupt = errors.New("corrupt tree")

// NodeType is the kind of a directory entry.
type NodeType uint8

// Node types.
const (
	File NodeType = iota + 1
	Dir
	Symlink
	BlockDev
	CharDev
	FIFO
	Socket
	numNodeTypes
)

func (t NodeType) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case BlockDev:
		return "blockdev"
	case CharDev:
		return "chardev"
	case FIFO:
		return "fifo"
	case Socket:
		return "socket"
	}
	return fmt.Sprintf("nodetype(%d)", t)
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// Node is one directory entry with everything needed to recreate it.
type Node struct {
	Name       string   `json:"name"`
	Type       NodeType `json:"type"`
	Mode       uint32   `json:"mode"` // permission bits including setuid, setgid and sticky
	UID        uint32   `json:"uid"`
	GID        uint32   `json:"gid"`
	ModTime    int64    `json:"mtime"` // Unix nanoseconds
	ChangeTime int64    `json:"ctime"`
	Size       uint64   `json:"size"`
	Inode      uint64   `json:"inode"`
	Device     uint64   `json:"device"`
	Links      uint64   `json:"links"`
	Rdev       uint64   `json:"rdev,omitempty"`
	LinkTarget string   `json:"link_target,omitempty"`
	Xattrs     []Xattr  `json:"xattrs,omitempty"`
	Content    []id.ID  `json:"content,omitempty"`
	Subtree    id.ID    `json:"subtree,omitzero"`
}

// Tree is a directory's entries, sorted by name with no duplicates.
type Tree struct {
	Nodes []Node
}

const (
	version       = 1
	maxNameLen    = 4096
	maxTargetLen  = 64 << 10
	maxXattrValue = 64 << 10
)

// ValidName reports whether a name can be a directory entry: no separator, no NUL, not empty, "." or "..".
// Restores rely on this to never write outside their target.
func ValidName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > maxNameLen || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid file name %q", name)
	}
	return nil
}

// Encode serialises the tree. Nodes must already be sorted by name.
func (t *Tree) Encode() []byte {
	buf := []byte{version}
	buf = binary.AppendUvarint(buf, uint64(len(t.Nodes)))
	for i := range t.Nodes {
		buf = t.Nodes[i].append(buf)
	}
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func (n *Node) append(buf []byte) []byte {
	buf = appendString(buf, n.Name)
	buf = append(buf, byte(n.Type))
	for _, v := range []uint64{uint64(n.Mode), uint64(n.UID), uint64(n.GID)} {
		buf = binary.AppendUvarint(buf, v)
	}
	buf = binary.AppendVarint(buf, n.ModTime)
	buf = binary.AppendVarint(buf, n.ChangeTime)
	for _, v := range []uint64{n.Size, n.Inode, n.Device, n.Links, n.Rdev} {
		buf = binary.AppendUvarint(buf, v)
	}
	buf = appendString(buf, n.LinkTarget)
	buf = binary.AppendUvarint(buf, uint64(len(n.Xattrs)))
	for _, x := range n.Xattrs {
		buf = appendString(buf, x.Name)
		buf = appendString(buf, string(x.Value))
	}
	buf = binary.AppendUvarint(buf, uint64(len(n.Content)))
	for _, c := range n.Content {
		buf = append(buf, c[:]...)
	}
	if n.Type == Dir {
		buf = append(buf, n.Subtree[:]...)
	}
	return buf
}

// Decode parses a tree blob and validates every name, type and ordering.
func Decode(buf []byte) (*Tree, error) {
	if len(buf) == 0 || buf[0] != version {
		return nil, fmt.Errorf("tree has unknown version: %w", ErrCorrupt)
	}
	d := decoder{buf: buf[1:]}
	n := d.count(3)
	t := &Tree{Nodes: make([]Node, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		node := d.node()
		if d.err != nil {
			break
		}
		if err := node.validate(); err != nil {
			d.err = err
			break
		}
		if i > 0 && t.Nodes[i-1].Name >= node.Name {
			d.err = fmt.Errorf("entries not sorted or duplicated at %q", node.Name)
			break
		}
		t.Nodes = append(t.Nodes, node)
	}
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.buf))
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode tree: %v: %w", d.err, ErrCorrupt)
	}
	return t, nil
}

func (n *Node) validate() error {
	if err := ValidName(n.Name); err != nil {
		return err
	}
	if n.Type < File || n.Type >= numNodeTypes {
		return fmt.Errorf("%q has unknown type %d", n.Name, n.Type)
	}
	if n.Mode > 0o7777 {
		return fmt.Errorf("%q has invalid mode %o", n.Name, n.Mode)
	}
	if n.Type != File && len(n.Content) > 0 {
		return fmt.Errorf("%q is a %s with content", n.Name, n.Type)
	}
	if n.Type == Dir && n.Subtree.IsNull() {
		return fmt.Errorf("directory %q has no subtree", n.Name)
	}
	if n.Type != Symlink && n.LinkTarget != "" {
		return fmt.Errorf("%q is a %s with a link target", n.Name, n.Type)
	}
	return nil
}

type decoder struct {
	buf []byte
	err error
}

func (d *decoder) node() Node {
	var n Node
	n.Name = d.str(maxNameLen)
	n.Type = NodeType(d.byte())
	n.Mode = uint32(d.uvarint(1<<32 - 1))
	n.UID = uint32(d.uvarint(1<<32 - 1))
	n.GID = uint32(d.uvarint(1<<32 - 1))
	n.ModTime = d.varint()
	n.ChangeTime = d.varint()
	n.Size = d.uvarint(1<<63 - 1)
	n.Inode = d.uvarint(1<<64 - 1)
	n.Device = d.uvarint(1<<64 - 1)
	n.Links = d.uvarint(1<<64 - 1)
	n.Rdev = d.uvarint(1<<64 - 1)
	n.LinkTarget = d.str(maxTargetLen)
	if nx := d.count(2); nx > 0 {
		n.Xattrs = make([]Xattr, nx)
		for i := range n.Xattrs {
			n.Xattrs[i] = Xattr{Name: d.str(maxNameLen), Value: []byte(d.str(maxXattrValue))}
		}
	}
	if nc := d.count(id.Size); nc > 0 {
		n.Content = make([]id.ID, nc)
		for i := range n.Content {
			n.Content[i] = d.id()
		}
	}
	if n.Type == Dir {
		n.Subtree = d.id()
	}
	return n
}

func (d *decoder) uvarint(limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.buf)
	if k <= 0 || v > limit {
		d.err = errors.New("bad number")
		return 0
	}
	d.buf = d.buf[k:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Varint(d.buf)
	if k <= 0 {
		d.err = errors.New("bad number")
		return 0
	}
	d.buf = d.buf[k:]
	return v
}

// count reads an element count and rejects counts the remaining bytes cannot hold, so a crafted count cannot
// make us allocate.
func (d *decoder) count(minElem int) int {
	v := d.uvarint(1<<63 - 1)
	if d.err == nil && v > uint64(len(d.buf)/minElem) {
		d.err = fmt.Errorf("count %d exceeds the remaining %d bytes", v, len(d.buf))
	}
	if d.err != nil {
		return 0
	}
	return int(v)
}

func (d *decoder) str(limit int) string {
	n := d.uvarint(uint64(limit))
	if d.err == nil && n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("string of %d bytes exceeds the remaining %d", n, len(d.buf))
	}
	if d.err != nil {
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.buf) == 0 {
		d.fail()
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) id() id.ID {
	var out id.ID
	if d.err != nil || len(d.buf) < id.Size {
		d.fail()
		return out
	}
	copy(out[:], d.buf)
	d.buf = d.buf[id.Size:]
	return out
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errors.New("unexpected end of data")
	}
}
