package sqlite

import (
	"fmt"

	"github.com/klauspost/compress/s2"
)

// payloadS2 is plinth_outbox.payload_encoding for a payload compressed
// with S2 (outbox.go).
const payloadS2 = "s2"

// compressFrom is the least payload worth compressing: below it a row
// shares its page with others anyway.
const compressFrom = 512

// encodePayload returns the payload as the outbox stores it, and its
// encoding ("" for the bytes as they are): compressed with S2 when that
// saves at least an eighth, which an event's JSON always does (about
// half; a microsecond for 2 KB).
func encodePayload(p []byte) ([]byte, string) {
	if p == nil {
		return []byte{}, ""
	}
	if len(p) < compressFrom {
		return p, ""
	}
	c := s2.Encode(nil, p)
	if len(c) > len(p)-len(p)/8 {
		return p, ""
	}
	return c, payloadS2
}

// decodePayload undoes encodePayload.
func decodePayload(p []byte, encoding string) ([]byte, error) {
	switch encoding {
	case "":
		if p == nil {
			return []byte{}, nil
		}
		return p, nil
	case payloadS2:
		out, err := s2.Decode(nil, p)
		if err != nil {
			return nil, fmt.Errorf("the payload does not decode as S2: %w", err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("the payload's encoding %q is not one this Plinth knows (a newer one wrote it?)", encoding)
	}
}
