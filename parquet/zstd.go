package parquet

import (
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/compress"
	pqzstd "github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// pageWindow is the zstd window of the kept encoders: a little more than
// the pages parquet-go cuts (256 KiB of encoded values). Each page is
// compressed on its own (EncodeAll), so zstd's default window (8 MiB)
// finds nothing more and costs every encoder a history of twice the
// window — the largest part of plinth serve's memory under writes while
// the lake landed inside it.
const pageWindow = 1 << 19

// keptZstd is parquet-go's zstd codec with encoders of a page-sized window
// (pageWindow), kept for good rather than in a sync.Pool. Each collection empties a sync.Pool, and a new zstd
// encoder allocates its history (1 MiB) and tables: a writer of many
// pages between collections (the data lake's lander) then allocated about
// a kilobyte per event for encoders alone, which made collections more
// frequent still. Decoding is parquet-go's.
type keptZstd struct {
	pqzstd.Codec
	encoders chan *zstd.Encoder // idle encoders, at most one per core
}

// newKeptZstd returns a zstd codec of the given level.
func newKeptZstd(level zstd.EncoderLevel) *keptZstd {
	return &keptZstd{Codec: pqzstd.Codec{Level: level}, encoders: make(chan *zstd.Encoder, runtime.GOMAXPROCS(0))}
}

var _ compress.Codec = (*keptZstd)(nil)

// NewFastZstd returns a codec like FastZstd with encoders of its own (for
// tests that measure a new encoder).
func NewFastZstd() compress.Codec { return newKeptZstd(zstd.SpeedFastest) }

// Encode compresses src into dst (as parquet-go's codec: one frame, no
// checksum, an empty input gives a frame too).
func (c *keptZstd) Encode(dst, src []byte) ([]byte, error) {
	var e *zstd.Encoder
	select {
	case e = <-c.encoders:
	default:
		var err error
		e, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(c.Level),
			zstd.WithWindowSize(pageWindow), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
		if err != nil {
			return dst[:0], err
		}
	}
	out := e.EncodeAll(src, dst[:0])
	select {
	case c.encoders <- e:
	default: // enough kept
	}
	return out, nil
}

// CompressionCodec is zstd's.
func (c *keptZstd) CompressionCodec() format.CompressionCodec { return format.Zstd }
