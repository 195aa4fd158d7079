package gateway

import (
	"encoding/binary"
	"hash/maphash"
)

// indexDigest sums a keyed hash of each posting (token, Seq) of the
// blind index: an order-free fingerprint, so that the postings, walked in
// token order, can be checked against the token sets, walked in Seq order,
// without holding either in memory. The key is a random seed drawn for
// each check: one who edits the database cannot compute the hash, so no
// change to the postings can be made to cancel out in the sum.
type indexDigest struct {
	seed maphash.Seed
	sum  uint64
	n    int64
}

// newIndexDigests returns two empty digests under one fresh seed.
func newIndexDigests() (*indexDigest, *indexDigest) {
	seed := maphash.MakeSeed()
	return &indexDigest{seed: seed}, &indexDigest{seed: seed}
}

// add adds one posting.
func (d *indexDigest) add(token []byte, seq int64) {
	var h maphash.Hash
	h.SetSeed(d.seed)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	h.Write(b[:])
	h.Write(token)
	d.sum += h.Sum64()
	d.n++
}

// addSet adds the postings a token set makes at seq.
func (d *indexDigest) addSet(tokens [][]byte, seq int64) {
	for _, t := range tokens {
		d.add(t, seq)
	}
}

// equal reports whether two digests of one seed saw the same postings.
func (d *indexDigest) equal(o *indexDigest) bool { return d.sum == o.sum && d.n == o.n }
