package datasafety

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"math/bits"
)

// ff1 is the FF1 format-preserving cipher of NIST SP 800-38G (AES, ten
// Feistel rounds) on strings of symbols 0..radix-1: a keyed permutation of
// the strings of each length. It is written here because no FF1 module is
// served by the module proxy this project builds from (capitalone/fpe,
// archived, and ubiq-fpe-go are refused); TestFF1NISTSamples checks it
// against NIST's published samples.
//
// The arithmetic is in uint64, so a string's halves must stay below 2^63:
// ff1MaxLen gives the longest string per radix (36 decimal digits, 30 hex
// digits, 26 letters). Obfuscator chains longer strings in pieces.
//
// Only encryption is implemented: pseudonyms are never reversed.
type ff1 struct {
	block cipher.Block
	// p caches CIPH(P) per (radix, n, len(tweak)) ([3]int → [16]byte): P
	// is one block that depends only on those, so each round's PRF starts
	// from it.
	p cache[[3]int, [16]byte]
}

func newFF1(key []byte) (*ff1, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &ff1{block: b}, nil
}

// ff1MaxLens holds ff1MaxLen by radix.
var ff1MaxLens = func() (t [257]int) {
	for r := 2; r <= 256; r++ {
		t[r] = ff1MaxLenOf(r)
	}
	return t
}()

// ff1MaxLen is the longest string ff1 encrypts for radix (2 to 256).
func ff1MaxLen(radix int) int { return ff1MaxLens[radix] }

func ff1MaxLenOf(radix int) int {
	v := 0
	for m := uint64(1); m <= (1<<63-1)/uint64(radix); m *= uint64(radix) {
		v++
	}
	return 2 * v
}

// pBlock returns CIPH(P) for the parameters.
func (f *ff1) pBlock(radix, n, t int) [16]byte {
	k := [3]int{radix, n, t}
	if c, ok := f.p.load(k); ok {
		return c
	}
	var c [16]byte
	u := n / 2
	p := [16]byte{1, 2, 1, byte(radix >> 16), byte(radix >> 8), byte(radix), 10, byte(u),
		byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), byte(t >> 24), byte(t >> 16), byte(t >> 8), byte(t)}
	f.block.Encrypt(c[:], p[:])
	f.p.store(k, c)
	return c
}

func ff1Pow(radix, m int) uint64 {
	r := uint64(1)
	for range m {
		r *= uint64(radix)
	}
	return r
}

// num returns the value of symbols x (most significant first) in radix.
func ff1Num(x []byte, radix int) uint64 {
	var v uint64
	for _, s := range x {
		v = v*uint64(radix) + uint64(s)
	}
	return v
}

// str writes v into x as len(x) symbols in radix.
func ff1Str(x []byte, v uint64, radix int) {
	for i := len(x) - 1; i >= 0; i-- {
		x[i] = byte(v % uint64(radix))
		v /= uint64(radix)
	}
}

// encrypt replaces x (symbols below radix, 2 <= len(x) <= ff1MaxLen) by
// its FF1 encryption under tweak.
func (f *ff1) encrypt(x []byte, radix int, tweak []byte) error {
	n := len(x)
	if radix < 2 || radix > 256 || n < 2 || n > ff1MaxLens[radix] {
		return fmt.Errorf("ff1: cannot encrypt %d symbols of radix %d", n, radix)
	}
	u, v := n/2, n-n/2
	mu, mv := ff1Pow(radix, u), ff1Pow(radix, v)
	b := (bits.Len64(mv-1) + 7) / 8
	d := 4*((b+3)/4) + 4
	t := len(tweak)
	p := f.pBlock(radix, n, t)
	pad := ((-t-b-1)%16 + 16) % 16
	var qbuf [64]byte
	var q []byte
	if t+pad+1+b <= len(qbuf) {
		q = qbuf[:t+pad+1+b]
	} else {
		q = make([]byte, t+pad+1+b)
	}
	copy(q, tweak)
	a, bb := ff1Num(x[:u], radix), ff1Num(x[u:], radix)
	var r, s [16]byte
	for i := range 10 {
		q[t+pad] = byte(i)
		for j := range b {
			q[len(q)-1-j] = byte(bb >> (8 * j))
		}
		// R = PRF(P || Q): CBC-MAC with a zero IV, starting from CIPH(P).
		r = p
		for off := 0; off < len(q); off += 16 {
			for j := range 16 {
				r[j] ^= q[off+j]
			}
			f.block.Encrypt(r[:], r[:])
		}
		// S = the first d bytes of R || CIPH(R xor [1]) || …; d <= 16 here
		// because b <= 8.
		s = r
		m := mu
		if i%2 == 1 {
			m = mv
		}
		// y = NUM(S) mod radix^m: S has d <= 12 bytes, a high part of up
		// to 32 bits and a low part of 64.
		var hi, lo uint64
		for j := range d {
			hi = hi<<8 | lo>>56
			lo = lo<<8 | uint64(s[j])
		}
		_, y := bits.Div64(hi%m, lo, m)
		c := a%m + y
		if c >= m || c < y {
			c -= m
		}
		a, bb = bb, c
	}
	ff1Str(x[:u], a, radix)
	ff1Str(x[u:], bb, radix)
	return nil
}
