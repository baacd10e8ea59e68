package tree

import (
	"errors"
	"reflect"
	"testing"

	"github.com/straddle-io/straddle/repo/id"
)

func sample() *Tree {
	return &Tree{Nodes: []Node{
		{Name: "a\xffnot-utf8", Type: File, Mode: 0o4755, UID: 1000, GID: 1000, ModTime: -5, ChangeTime: 1 << 60, Size: 3, Inode: 7, Device: 9, Links: 2,
			Xattrs: []Xattr{{Name: "user.k", Value: []byte{0, 1}}}, Content: []id.ID{id.Random(), id.Random()}},
		{Name: "dir", Type: Dir, Mode: 0o700, Subtree: id.Random()},
		{Name: "link", Type: Symlink, Mode: 0o777, LinkTarget: "/etc/passwd"},
		{Name: "pipe", Type: FIFO, Mode: 0o600},
		{Name: "tty", Type: CharDev, Rdev: 0x0501},
	}}
}

func TestRoundTrip(t *testing.T) {
	tr := sample()
	got, err := Decode(tr.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, tr) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, tr)
	}
	empty, err := Decode((&Tree{}).Encode())
	if err != nil || len(empty.Nodes) != 0 {
		t.Fatalf("empty tree: %v", err)
	}
}

func TestDecodeRejectsEscapingNames(t *testing.T) {
	for _, name := range []string{"..", ".", "", "a/b", "../../etc", "/abs", "nul\x00"} {
		tr := &Tree{Nodes: []Node{{Name: name, Type: File}}}
		if _, err := Decode(tr.Encode()); !errors.Is(err, ErrCorrupt) {
			t.Errorf("name %q accepted: %v", name, err)
		}
	}
}

func TestDecodeRejectsBadStructure(t *testing.T) {
	cases := map[string]*Tree{
		"duplicate":     {Nodes: []Node{{Name: "a", Type: File}, {Name: "a", Type: Dir, Subtree: id.Random()}}},
		"unsorted":      {Nodes: []Node{{Name: "b", Type: File}, {Name: "a", Type: File}}},
		"bad type":      {Nodes: []Node{{Name: "a", Type: 99}}},
		"dir no tree":   {Nodes: []Node{{Name: "a", Type: Dir}}},
		"dir content":   {Nodes: []Node{{Name: "a", Type: Symlink, Content: []id.ID{id.Random()}}}},
		"file target":   {Nodes: []Node{{Name: "a", Type: File, LinkTarget: "x"}}},
		"mode too wide": {Nodes: []Node{{Name: "a", Type: File, Mode: 0o170000}}},
	}
	for name, tr := range cases {
		if _, err := Decode(tr.Encode()); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	buf := sample().Encode()
	for _, bad := range [][]byte{nil, {2}, buf[:len(buf)-1], append(buf, 0)} {
		if _, err := Decode(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Decode(%d bytes) = %v, want ErrCorrupt", len(bad), err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sample().Encode())
	f.Add((&Tree{}).Encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Decode(data)
		if err != nil {
			return
		}
		for _, n := range tr.Nodes {
			if ValidName(n.Name) != nil {
				t.Fatalf("decoded invalid name %q", n.Name)
			}
		}
		if _, err := Decode(tr.Encode()); err != nil {
			t.Fatalf("re-encoding a decoded tree fails: %v", err)
		}
	})
}
