package research

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fhiranchor/fhiranchor/cohort"
)

// The cohort index snapshot. Rebuilding the index at start means opening
// and decoding every research copy (minutes at millions of resources), so
// the service keeps a snapshot of it in a file and, at start, loads it and
// replays only the versions and erasures committed after it.
//
// The file is sealed like the copies it summarizes: AES-256-GCM in chunks
// (the STREAM construction: a fresh key per file, derived from the vault's
// "research-key"/"cohort-index" token and a random salt; each chunk's
// nonce is its number; its additional data says whether it is the last),
// so a reordered, truncated, extended or altered file does not open. Inside,
// a header binds the snapshot to the log: the Seq of the last version and
// of the last erasure it reflects, and the hash of the leaf at that version
// Seq. A snapshot that does not open, does not decode, or whose leaf is not
// this vault's leaf at that Seq is not trusted: the index is rebuilt from
// the research copies (and the next snapshot replaces it). An older genuine
// snapshot is harmless: replaying from its position gives the current
// index, erasures included.
//
// Erasure: the snapshot is sealed under a service key, not under the
// patient's data key, so shredding that key does not reach it. Run
// therefore rewrites the snapshot in the round after any erasure is
// applied (seconds), and at start after replaying erasures newer than the
// loaded snapshot, so an erased patient's de-identified facts do not
// outlive the erasure in it.

const (
	snapshotFileMagic = "fhiranchor-sealed-cohort-index-1\n"
	snapshotChunk     = 1 << 20
	snapshotSaltLen   = 32
)

// errSnapshot is wrapped by the reasons a snapshot is not used.
var errSnapshot = errors.New("cohort index snapshot not usable")

// snapshotHeader is what binds a snapshot to the log.
type snapshotHeader struct {
	after       int64    // Seq of the last version reflected
	erasedAfter int64    // Seq of the last erasure leaf applied
	leaf        [32]byte // SHA-256 of the leaf data at Seq after (zero when after is 0)
}

func (h snapshotHeader) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(h.after))
	b = binary.AppendUvarint(b, uint64(h.erasedAfter))
	return append(b, h.leaf[:]...)
}

func decodeHeader(r io.ByteReader) (snapshotHeader, error) {
	var h snapshotHeader
	a, err1 := binary.ReadUvarint(r)
	e, err2 := binary.ReadUvarint(r)
	if err := errors.Join(err1, err2); err != nil {
		return h, fmt.Errorf("%w: header: %w", errSnapshot, err)
	}
	h.after, h.erasedAfter = int64(a), int64(e)
	for i := range h.leaf {
		b, err := r.ReadByte()
		if err != nil {
			return h, fmt.Errorf("%w: header: %w", errSnapshot, err)
		}
		h.leaf[i] = b
	}
	return h, nil
}

// snapshotAEAD derives the file key from the service's snapshot key and
// the file's salt.
func snapshotAEAD(key, salt []byte) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, key)
	m.Write(salt)
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func chunkNonce(aead cipher.AEAD, n uint64) []byte {
	nonce := make([]byte, aead.NonceSize())
	binary.BigEndian.PutUint64(nonce[len(nonce)-8:], n)
	return nonce
}

func chunkAD(salt []byte, last bool) []byte {
	ad := append([]byte(snapshotFileMagic), salt...)
	if last {
		return append(ad, 1)
	}
	return append(ad, 0)
}

// sealWriter seals what is written to it in chunks.
type sealWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	salt   []byte
	buf    []byte
	n      uint64
	sealed []byte
}

func (s *sealWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), snapshotChunk-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p, written = p[k:], written+k
		if len(s.buf) == snapshotChunk {
			if err := s.flush(false); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flush seals the buffered chunk: a flag byte (1 = last), its length and
// the ciphertext.
func (s *sealWriter) flush(last bool) error {
	s.sealed = s.aead.Seal(s.sealed[:0], chunkNonce(s.aead, s.n), s.buf, chunkAD(s.salt, last))
	var hdr [5]byte
	if last {
		hdr[0] = 1
	}
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(s.sealed)))
	if _, err := s.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := s.w.Write(s.sealed); err != nil {
		return err
	}
	s.n++
	s.buf = s.buf[:0]
	return nil
}

// openReader opens a sealed stream chunk by chunk.
type openReader struct {
	r    io.Reader
	aead cipher.AEAD
	salt []byte
	n    uint64
	buf  []byte
	cur  []byte
	done bool
}

func (o *openReader) Read(p []byte) (int, error) {
	for len(o.cur) == 0 {
		if o.done {
			return 0, io.EOF
		}
		var hdr [5]byte
		if _, err := io.ReadFull(o.r, hdr[:]); err != nil {
			return 0, fmt.Errorf("%w: truncated", errSnapshot)
		}
		last := hdr[0] == 1
		size := binary.BigEndian.Uint32(hdr[1:])
		if hdr[0] > 1 || size > snapshotChunk+uint32(o.aead.Overhead()) {
			return 0, fmt.Errorf("%w: damaged chunk", errSnapshot)
		}
		if cap(o.buf) < int(size) {
			o.buf = make([]byte, size)
		}
		ct := o.buf[:size]
		if _, err := io.ReadFull(o.r, ct); err != nil {
			return 0, fmt.Errorf("%w: truncated", errSnapshot)
		}
		plain, err := o.aead.Open(ct[:0], chunkNonce(o.aead, o.n), ct, chunkAD(o.salt, last))
		if err != nil {
			return 0, fmt.Errorf("%w: a chunk does not open", errSnapshot)
		}
		o.n++
		o.cur = plain
		if last {
			var extra [1]byte
			if n, _ := o.r.Read(extra[:]); n > 0 {
				return 0, fmt.Errorf("%w: data after the last chunk", errSnapshot)
			}
			o.done = true
		}
	}
	n := copy(p, o.cur)
	o.cur = o.cur[n:]
	return n, nil
}

// writeSnapshot writes ix and its header sealed under key to path,
// atomically (a temporary file renamed over it once synced).
func writeSnapshot(path string, key []byte, h snapshotHeader, ix *cohort.Index) (int64, error) {
	salt := make([]byte, snapshotSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return 0, err
	}
	aead, err := snapshotAEAD(key, salt)
	if err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cohort-index-*")
	if err != nil {
		return 0, fmt.Errorf("create cohort index snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	bw := bufio.NewWriterSize(tmp, 1<<16)
	bw.WriteString(snapshotFileMagic)
	bw.Write(salt)
	sw := &sealWriter{w: bw, aead: aead, salt: salt, buf: make([]byte, 0, snapshotChunk)}
	if _, err := sw.Write(h.encode()); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("write cohort index snapshot: %w", err)
	}
	if _, err := ix.WriteTo(sw); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("write cohort index snapshot: %w", err)
	}
	err = sw.flush(true)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	var size int64
	if err == nil {
		var st os.FileInfo
		if st, err = tmp.Stat(); err == nil {
			size = st.Size()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return 0, fmt.Errorf("write cohort index snapshot: %w", err)
	}
	return size, nil
}

// readSnapshot opens the snapshot at path; os.ErrNotExist (wrapped) means
// there is none, errSnapshot that it is not usable.
func readSnapshot(path string, key []byte) (snapshotHeader, *cohort.Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return snapshotHeader{}, nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	head := make([]byte, len(snapshotFileMagic)+snapshotSaltLen)
	if _, err := io.ReadFull(br, head); err != nil || !bytes.HasPrefix(head, []byte(snapshotFileMagic)) {
		return snapshotHeader{}, nil, fmt.Errorf("%w: not a sealed cohort index", errSnapshot)
	}
	salt := head[len(snapshotFileMagic):]
	aead, err := snapshotAEAD(key, salt)
	if err != nil {
		return snapshotHeader{}, nil, err
	}
	or := bufio.NewReaderSize(&openReader{r: br, aead: aead, salt: salt}, 1<<16)
	h, err := decodeHeader(or)
	if err != nil {
		return h, nil, err
	}
	ix, err := cohort.ReadIndex(or)
	if err != nil {
		return h, nil, fmt.Errorf("%w: %w", errSnapshot, err)
	}
	// The whole stream must have opened, up to its last chunk.
	if _, err := or.ReadByte(); !errors.Is(err, io.EOF) {
		return h, nil, fmt.Errorf("%w: not read to its end", errSnapshot)
	}
	return h, ix, nil
}

// leafHash returns the hash of the leaf data at seq, or ok false if the
// vault has no such leaf.
func (s *Service) leafHash(ctx context.Context, seq int64) (h [32]byte, ok bool, err error) {
	if seq == 0 {
		return h, true, nil
	}
	ls, err := s.vault.Store().Leaves(ctx, seq-1, 1)
	if err != nil {
		return h, false, fmt.Errorf("read the leaf of the cohort index snapshot: %w", err)
	}
	if len(ls) == 0 || ls[0].Seq != seq {
		return h, false, nil
	}
	return sha256.Sum256(ls[0].Data), true, nil
}
