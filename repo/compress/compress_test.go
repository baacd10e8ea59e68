package compress

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	c, err := New(Fastest, 2)
	if err != nil {
		t.Fatal(err)
	}
	text := bytes.Repeat([]byte("pod volume data "), 1000)
	z, ok := c.Compress(nil, text)
	if !ok || len(z) >= len(text) {
		t.Fatalf("compressible text: ok=%v len=%d", ok, len(z))
	}
	out, err := c.Decompress(nil, z, len(text))
	if err != nil || !bytes.Equal(out, text) {
		t.Fatalf("Decompress: %v", err)
	}
	if _, err := c.Decompress(nil, z, len(text)+1); err == nil {
		t.Fatal("wrong raw length accepted")
	}
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	if _, ok := c.Compress(nil, random); ok {
		t.Fatal("random data reported as compressed")
	}
	off, _ := New(Off, 1)
	if _, ok := off.Compress(nil, text); ok {
		t.Fatal("level off compressed")
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"fastest", "default", "better", "best", "off"} {
		l, err := ParseLevel(s)
		if err != nil || l.String() != s {
			t.Errorf("ParseLevel(%q) = %v, %v", s, l, err)
		}
	}
	if _, err := ParseLevel("turbo"); err == nil {
		t.Error("unknown level accepted")
	}
}

func FuzzDecompress(f *testing.F) {
	c, _ := New(Fastest, 1)
	z, _ := c.Compress(nil, bytes.Repeat([]byte("abc"), 100))
	f.Add(z, 300)
	f.Fuzz(func(t *testing.T, data []byte, rawLen int) {
		if rawLen < 0 || rawLen > 1<<20 {
			return
		}
		_, _ = c.Decompress(nil, data, rawLen)
	})
}
