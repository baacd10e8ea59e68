package dataset

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func digest(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = sha256.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGenerateIsDeterministic(t *testing.T) {
	s := Specs["small"].Scaled(0.005)
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	na, err := Generate(a, s, 1)
	if err != nil {
		t.Fatal(err)
	}
	nb, _ := Generate(b, s, 1)
	da, db := digest(t, a), digest(t, b)
	if na != nb || len(da) != s.Files || len(da) != len(db) {
		t.Fatalf("sizes %d/%d, files %d/%d, want %d", na, nb, len(da), len(db), s.Files)
	}
	for k, v := range da {
		if db[k] != v {
			t.Fatalf("%s differs between two generations with the same seed", k)
		}
	}
	c := filepath.Join(t.TempDir(), "c")
	_, _ = Generate(c, s, 2)
	same := 0
	for k, v := range digest(t, c) {
		if da[k] == v {
			same++
		}
	}
	if same > 0 {
		t.Fatalf("%d files identical under another seed", same)
	}
}

func TestMutateChangesAboutThreePercent(t *testing.T) {
	s := Specs["small"].Scaled(0.02) // 400 files
	dir := filepath.Join(t.TempDir(), "d")
	if _, err := Generate(dir, s, 5); err != nil {
		t.Fatal(err)
	}
	before := digest(t, dir)
	changed, err := Mutate(dir, s, 5, 0.03)
	if err != nil {
		t.Fatal(err)
	}
	after := digest(t, dir)
	diff := 0
	for k, v := range before {
		if after[k] != v {
			diff++
		}
	}
	if diff != len(changed) || diff != 12 {
		t.Fatalf("%d files differ, %d reported changed, want 12 (3%% of 400)", diff, len(changed))
	}
	// The same mutation on a fresh copy gives the same bytes.
	dir2 := filepath.Join(t.TempDir(), "d")
	_, _ = Generate(dir2, s, 5)
	_, _ = Mutate(dir2, s, 5, 0.03)
	for k, v := range digest(t, dir2) {
		if after[k] != v {
			t.Fatalf("%s: the mutation is not deterministic", k)
		}
	}
}

func TestTextCompressesRandomDoesNot(t *testing.T) {
	var text bytes.Buffer
	w := bufioWriter(&text)
	if err := writeText(w, 1<<20, 9); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	z := enc.EncodeAll(text.Bytes(), nil)
	if ratio := float64(text.Len()) / float64(len(z)); ratio < 2 || ratio > 8 {
		t.Fatalf("text compresses %.1f:1, want log-like 2..8", ratio)
	}
}

func bufioWriter(b *bytes.Buffer) *bufio.Writer { return bufio.NewWriter(b) }

func TestFiles1mShape(t *testing.T) {
	s := Specs["files1m"].Scaled(0.002) // 2,000 files, 2 directories plus one of 200
	dir := filepath.Join(t.TempDir(), "d")
	total, err := Generate(dir, s, 3)
	if err != nil {
		t.Fatal(err)
	}
	big, err := os.ReadDir(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if len(big) != 200 {
		t.Fatalf("the big directory holds %d entries, want 200", len(big))
	}
	small, large := 0, 0
	for _, f := range s.files(3) {
		switch {
		case f.size <= 4<<10:
			small++
		case f.size <= 64<<10:
			large++
		default:
			t.Fatalf("%s: %d bytes, more than 64 KiB", f.path, f.size)
		}
	}
	if small != 1980 || large != 20 || total > 2000*4<<10+20*64<<10 {
		t.Fatalf("%d files of 0–4 KiB and %d larger (%d bytes), want 1980 and 20", small, large, total)
	}
	if s.Changed() != 0.01 || Specs["small"].Changed() != 0.03 {
		t.Fatalf("change fractions %g and %g, want 0.01 and 0.03", s.Changed(), Specs["small"].Changed())
	}
}
