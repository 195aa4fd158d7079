package cohort

import "math/bits"

// bitset is a set of patient numbers. Missing high words are zero, so sets of
// different lengths combine.
type bitset []uint64

func (b bitset) set(i uint32) bitset {
	w := int(i / 64)
	if w >= len(b) {
		b = append(b, make([]uint64, w+1-len(b))...)
	}
	b[w] |= 1 << (i % 64)
	return b
}

func (b bitset) clear(i uint32) {
	if w := int(i / 64); w < len(b) {
		b[w] &^= 1 << (i % 64)
	}
}

func (b bitset) has(i uint32) bool {
	w := int(i / 64)
	return w < len(b) && b[w]&(1<<(i%64)) != 0
}

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// and returns a new set b ∩ o.
func (b bitset) and(o bitset) bitset {
	out := make(bitset, min(len(b), len(o)))
	for i := range out {
		out[i] = b[i] & o[i]
	}
	return out
}

// orInto adds o to b in place, as far as b reaches.
func (b bitset) orInto(o bitset) {
	for i := range min(len(b), len(o)) {
		b[i] |= o[i]
	}
}

// andNot returns a new set b \ o.
func (b bitset) andNot(o bitset) bitset {
	out := make(bitset, len(b))
	for i, w := range b {
		if i < len(o) {
			w &^= o[i]
		}
		out[i] = w
	}
	return out
}

// each calls fn for every member, in increasing order.
func (b bitset) each(fn func(uint32)) {
	for i, w := range b {
		for w != 0 {
			t := bits.TrailingZeros64(w)
			fn(uint32(i*64 + t))
			w &= w - 1
		}
	}
}
