package parquet

import (
	"sync"

	kzstd "github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// pageWindow is the zstd window of FastZstd: a little more than the
// pages parquet-go cuts (256 KiB of encoded values), so matches are found
// across a whole page as with the default window.
const pageWindow = 1 << 19

// pageZstd is parquet-go's zstd codec with a window of pageWindow instead
// of zstd's default 8 MiB. Each page is compressed on its own (EncodeAll),
// so a longer window finds nothing more, but every pooled encoder keeps
// a history buffer of twice the window: 16 MiB at the default, allocated
// again whenever the garbage collector empties the pool. That made the
// lake, landing inside plinth serve, the largest part of serve's memory
// under writes. Decoding is parquet-go's: the frames are ordinary zstd.
type pageZstd struct {
	zstd.Codec
	encoders sync.Pool
}

func (c *pageZstd) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*kzstd.Encoder)
	if e == nil {
		var err error
		e, err = kzstd.NewWriter(nil,
			kzstd.WithEncoderConcurrency(1),
			kzstd.WithEncoderLevel(c.Level),
			kzstd.WithWindowSize(pageWindow),
			kzstd.WithZeroFrames(true),
			kzstd.WithEncoderCRC(false),
		)
		if err != nil {
			return nil, err
		}
	}
	defer c.encoders.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

// NewFastZstd returns a codec like FastZstd with its own pool of
// encoders (for tests that measure a new encoder).
func NewFastZstd() compress.Codec {
	return &pageZstd{Codec: zstd.Codec{Level: zstd.SpeedFastest}}
}
