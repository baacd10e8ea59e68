// Package compress compresses blobs with zstd, and stores them raw when compression does not pay.
package compress

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Level names a zstd speed/ratio trade-off; the zero value is the fastest.
type Level int

// Levels a repository may be configured with.
const (
	Fastest Level = iota
	Default
	Better
	Best
	// Off stores every blob raw.
	Off
)

// ParseLevel maps a user's word to a Level.
func ParseLevel(s string) (Level, error) {
	switch s {
	case "", "fastest", "auto":
		return Fastest, nil
	case "default":
		return Default, nil
	case "better":
		return Better, nil
	case "best", "max":
		return Best, nil
	case "off":
		return Off, nil
	}
	return 0, fmt.Errorf("unknown compression level %q (want fastest, default, better, best or off)", s)
}

func (l Level) String() string {
	return [...]string{"fastest", "default", "better", "best", "off"}[l]
}

// Codec compresses and decompresses; it is safe for concurrent use.
type Codec struct {
	level Level
	enc   *zstd.Encoder
	dec   *zstd.Decoder
}

// New prepares a codec; concurrency bounds how many blobs are compressed at once.
func New(level Level, concurrency int) (*Codec, error) {
	if level < Fastest || level > Off {
		return nil, fmt.Errorf("invalid compression level %d", level)
	}
	zl := [...]zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression, zstd.SpeedFastest}[level]
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zl), zstd.WithEncoderConcurrency(concurrency),
		zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(concurrency), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &Codec{level: level, enc: enc, dec: dec}, nil
}

// Compress appends the compressed form of src to dst and reports whether it is smaller than src. When it is
// not, the caller stores src raw; the blob's stored length then equals its raw length, which is how readers
// tell the two apart.
func (c *Codec) Compress(dst, src []byte) ([]byte, bool) {
	if c.level == Off || len(src) == 0 {
		return dst, false
	}
	out := c.enc.EncodeAll(src, dst)
	if len(out)-len(dst) >= len(src) {
		return dst, false
	}
	return out, true
}

// Bound is the most bytes Compress may append for n input bytes, so callers can size buffers once.
func (c *Codec) Bound(n int) int { return c.enc.MaxEncodedSize(n) }

// Decompress appends the decompressed src to dst and fails unless exactly rawLen bytes come out.
func (c *Codec) Decompress(dst, src []byte, rawLen int) ([]byte, error) {
	start := len(dst)
	out, err := c.dec.DecodeAll(src, dst)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if len(out)-start != rawLen {
		return nil, fmt.Errorf("zstd: decompressed %d bytes, want %d", len(out)-start, rawLen)
	}
	return out, nil
}
