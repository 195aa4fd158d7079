package anchor

import "time"

// batch holds the hashes of the leaves read from the source but not yet in
// the tree, in index order, and decides when they become a checkpoint. It
// never holds more than max, so a backlog waits in the vault, not in memory.
type batch struct {
	max    int           // Config.MaxLeaves
	delay  time.Duration // Config.MaxDelay
	hashes [][]byte
	first  time.Time // when the oldest was read
}

func (b *batch) len() int  { return len(b.hashes) }
func (b *batch) room() int { return b.max - len(b.hashes) }

func (b *batch) add(now time.Time, leafHash []byte) {
	if len(b.hashes) == 0 {
		b.first = now
	}
	b.hashes = append(b.hashes, leafHash)
}

// ready reports whether the batch should become a checkpoint: it is full,
// or its oldest leaf has waited delay.
func (b *batch) ready(now time.Time) bool {
	n := len(b.hashes)
	return n > 0 && (n >= b.max || now.Sub(b.first) >= b.delay)
}

// clear empties the batch once its leaves are in the tree.
func (b *batch) clear() {
	b.hashes, b.first = nil, time.Time{}
}

// maxBackoffShift caps a backoff at 2^5 = 32 times its base.
const maxBackoffShift = 5

// backoff spaces out attempts after failures: base, 2*base, ... up to
// 32*base, and back to immediate after a success.
type backoff struct {
	base     time.Duration
	failures int
	until    time.Time
}

func (b *backoff) ready(now time.Time) bool { return !now.Before(b.until) }

// fail records a failure at now and returns how long to wait.
func (b *backoff) fail(now time.Time) time.Duration {
	d := b.base << min(b.failures, maxBackoffShift)
	b.failures++
	b.until = now.Add(d)
	return d
}

func (b *backoff) reset() { b.failures, b.until = 0, time.Time{} }
