package sqlite

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/fhiranchor/fhiranchor/vault"
)

// The leaf journal. A read of patient data answers only once the record of
// its access decision is durable, and a SQLite commit of that record writes
// six b-tree pages to the WAL (leaves, sqlite_sequence, leaf_records and its
// three indexes) and makes every reader connection drop its page cache (a
// reader that sees a new commit starts its next transaction cold, with a
// pread per page it touches). So JournalLeaves makes leaves durable in a file
// of its own instead, an append and an fdatasync, and the writer moves them
// into leaves later, in bulk (fold): at the start of the next transaction
// of any Update, at most foldDelay after the first of them, and before any
// read of leaves, so that no reader of the log can tell a journalled leaf
// from one added by an Update, except by the time it took.
//
// The journal is two files, path-leafq-0 and path-leafq-1, written from
// their start and preallocated with zeros: on ext4 an fdatasync of an
// overwrite costs half one that extends a file (no metadata to commit).
// Leaves are appended to the active file; when a fold takes them, the
// journal switches to the other file if everything in it is folded, and
// writes it from its start again. A record is
//
//	crc32c (4 bytes, of what follows) | length of payload (4) | number (8) | first (8) | payload
//
// numbered one more than the record before it, across both files; first
// is the number of the first record of the same write. Reading a file from
// its start, its records are those up to the first whose checksum fails (a
// write torn by a crash: the last one, never acknowledged) or whose number
// does not follow (what is left of the file's previous use, numbered
// lower). journal_state.folded is the last number folded, set in the
// fold's transaction: after a crash, Open folds exactly the records above
// it. A record above it that Open cannot reach, past a damaged one, and
// not of the write that ended the records (the torn one), was
// acknowledged: Open fails rather than lose it.
//
// One Store at a time owns the journal, by an exclusive flock on the first
// file; another Store opened on the same database (a tool beside the
// server) has none, and its JournalLeaves says so.

const (
	journalSize = 1 << 20               // the preallocation of each file (a fold takes ~50 KB in); more extends it
	foldDelay   = 20 * time.Millisecond // how long a journalled leaf waits, at most, for a fold with nothing else to do
	recordHead  = 24
	maxPayload  = 1 << 20 // a leaf's record is at most a few KiB
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errJournalStopped is add's error once a write or fdatasync of the
// journal failed.
var errJournalStopped = errors.New("the leaf journal stopped after a failed sync")

// journaled is a leaf in the journal, its number and the number of the
// first record of the write it came in.
type journaled struct {
	n, first uint64
	leaf     vault.Leaf
}

type journal struct {
	mu     sync.Mutex
	files  [2]*os.File
	active int
	off    int64     // where the next record goes in the active file
	last   [2]uint64 // the number of the last record written to each file since its start
	next   uint64    // the number of the next record
	folded uint64    // the last number folded, as committed
	// pending are the leaves journalled and not folded, in order; a fold
	// takes a prefix (take) and drops it once committed (folded).
	pending []journaled
	kick    chan struct{} // capacity 1: the folder has something to fold
	failed  bool          // a write or an fdatasync failed: add refuses (errJournalStopped)
	closed  bool
	buf     []byte
}

// journalPaths are the journal's files for the database at path.
func journalPaths(path string) [2]string {
	return [2]string{path + "-leafq-0", path + "-leafq-1"}
}

// openJournal opens (creating and preallocating) the journal's files of
// the database at path, and returns the leaves in them numbered above
// folded, in order. It returns nil and no error if another Store holds the
// journal.
func openJournal(path string, folded uint64) (*journal, error) {
	j := &journal{folded: folded, kick: make(chan struct{}, 1)}
	ok := false
	defer func() {
		if !ok {
			j.close()
		}
	}()
	created := false
	for i, p := range journalPaths(path) {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open leaf journal: %w", err)
		}
		j.files[i] = f
		if i == 0 {
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
				if errors.Is(err, syscall.EWOULDBLOCK) {
					return nil, nil
				}
				return nil, fmt.Errorf("lock leaf journal: %w", err)
			}
		}
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("open leaf journal: %w", err)
		}
		if fi.Size() < journalSize {
			if err := preallocate(f, fi.Size()); err != nil {
				return nil, err
			}
			created = true
		}
	}
	if created {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return nil, err
		}
	}
	var found, beyond []journaled
	for i, f := range j.files {
		recs, _, past, err := readJournal(f, folded)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r.n > folded {
				found = append(found, r)
			}
		}
		if len(recs) > 0 {
			j.last[i] = recs[len(recs)-1].n
		}
		beyond = append(beyond, past...)
	}
	slices.SortFunc(found, func(a, b journaled) int { return cmp.Compare(a.n, b.n) })
	j.next = folded + 1
	for _, r := range found {
		if r.n != j.next {
			// Records are written one after another and each is durable
			// before the next is written: only tampering or a damaged
			// disk leaves a hole, and a hole is acknowledged leaves lost.
			return nil, fmt.Errorf("leaf journal: leaf %d is missing (found %d)", j.next, r.n)
		}
		j.next++
	}
	for _, r := range beyond {
		// Past the end of a file's records: the rest of the write that
		// was torn (it began at or before where the records end; what of
		// it reached the disk before the tear is folded, which records a
		// read that was never answered, never the reverse), or damage: a
		// write that began after the missing record was durable.
		if r.first > j.next {
			return nil, fmt.Errorf("leaf journal: leaf %d is damaged; leaf %d was written after it", j.next, r.n)
		}
	}
	// Numbered above anything in either file, the torn write's records
	// too, so that what is left of their present contents ends the
	// records written from now on.
	j.next = max(j.next, j.last[0]+1, j.last[1]+1)
	for _, r := range beyond {
		j.next = max(j.next, r.n+1)
	}
	j.pending = found
	// Open folds found before anything is appended: then every record in
	// both files is folded, and the first is written from its start.
	j.active, j.last = 0, [2]uint64{}
	ok = true
	return j, nil
}

// preallocate writes zeros to f from size to journalSize and syncs it.
func preallocate(f *os.File, size int64) error {
	zeros := make([]byte, 1<<20)
	for off := size; off < journalSize; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), journalSize-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("preallocate leaf journal: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("preallocate leaf journal: %w", err)
	}
	return nil
}

// syncDir makes the creation of files in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory of the leaf journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory of the leaf journal: %w", err)
	}
	return nil
}

// readJournal returns the records of a journal file, as the description
// above says, where they end, and the records found past that end that
// are numbered above folded (valid records beyond a damaged one, or of the
// torn write), with their first numbers.
func readJournal(f *os.File, folded uint64) (recs []journaled, end int64, beyond []journaled, err error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<62))
	if err != nil {
		return nil, 0, nil, fmt.Errorf("read leaf journal: %w", err)
	}
	off := 0
	for {
		r, size, ok := recordAt(data, off, 0)
		if !ok || (len(recs) > 0 && r.n != recs[len(recs)-1].n+1) {
			break
		}
		l, err := decodeLeaf(data[off+recordHead : off+recordHead+size])
		if err != nil {
			// The checksum holds, so we wrote it: a bug, not a torn write.
			return nil, 0, nil, fmt.Errorf("leaf journal: record %d: %w", r.n, err)
		}
		r.leaf = l
		recs = append(recs, r)
		off += recordHead + size
	}
	for at := off + 1; at+recordHead <= len(data); at++ {
		// A record's number is never 0: skip the zeros the files are
		// preallocated with, a page at a time, to where a head's number
		// could hold a byte that is not.
		nz := at + 8
		for nz+len(zeroPage) <= len(data) && bytes.Equal(data[nz:nz+len(zeroPage)], zeroPage) {
			nz += len(zeroPage)
		}
		at = max(at, nz-8-7)
		if r, _, ok := recordAt(data, at, folded); ok {
			beyond = append(beyond, r)
		}
	}
	return recs, int64(off), beyond, nil
}

var zeroPage = make([]byte, 4096)

// recordAt reads the head of the record at off, numbered above after, and
// checks its checksum; it returns the record (without its leaf), the
// length of its payload, and whether there is one.
func recordAt(data []byte, off int, after uint64) (journaled, int, bool) {
	if len(data)-off < recordHead {
		return journaled{}, 0, false
	}
	h := data[off : off+recordHead]
	size := int(binary.LittleEndian.Uint32(h[4:]))
	r := journaled{n: binary.LittleEndian.Uint64(h[8:]), first: binary.LittleEndian.Uint64(h[16:])}
	if r.n <= after || r.first == 0 || r.first > r.n || size > maxPayload || len(data)-off-recordHead < size ||
		crc32.Checksum(data[off+4:off+recordHead+size], castagnoli) != binary.LittleEndian.Uint32(h) {
		return journaled{}, 0, false
	}
	return r, size, true
}

// add appends leaves to the journal and returns once they are durable.
func (j *journal) add(ls []vault.Leaf) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return errors.New("journal leaves: the store is closed")
	}
	if j.failed {
		return errJournalStopped
	}
	buf := j.buf[:0]
	n := j.next
	for i := range ls {
		start := len(buf)
		buf = append(buf, make([]byte, recordHead)...)
		buf = encodeLeaf(buf, &ls[i])
		size := len(buf) - start - recordHead
		if size > maxPayload {
			return errors.New("journal leaf: record too large")
		}
		putHead(buf[start:], size, n, j.next)
		n++
	}
	j.buf = buf
	f := j.files[j.active]
	_, err := f.WriteAt(buf, j.off)
	if err == nil {
		err = syscall.Fdatasync(int(f.Fd()))
	}
	if err != nil {
		// After a failed fdatasync Linux may have dropped the pages it
		// could not write and will not report it again, and a failed
		// write may have written part: nothing written to this file since
		// can be trusted to be durable. The journal stops (the Store adds
		// leaves in its transactions instead); what it holds is folded as
		// before. Records of this write may yet be found after a restart
		// and folded: records of requests that failed, never a request
		// answered without its record.
		j.failed = true
		return fmt.Errorf("journal leaves: %w", err)
	}
	j.off += int64(len(buf))
	j.last[j.active] = n - 1
	for i := range ls {
		j.pending = append(j.pending, journaled{n: j.next, leaf: ls[i]})
		j.next++
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return nil
}

// putHead fills in the head of the record that b starts with, whose
// payload of size bytes follows it: numbered n, of the write that began
// with number first.
func putHead(b []byte, size int, n, first uint64) {
	binary.LittleEndian.PutUint32(b[4:], uint32(size))
	binary.LittleEndian.PutUint64(b[8:], n)
	binary.LittleEndian.PutUint64(b[16:], first)
	binary.LittleEndian.PutUint32(b, crc32.Checksum(b[4:recordHead+size], castagnoli))
}

// take returns the leaves to fold, in order (nil for none), and switches
// appends to the other file if everything in it is folded, so that it is
// written from its start again.
func (j *journal) take() []journaled {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.pending) == 0 {
		return nil
	}
	if other := 1 - j.active; j.last[other] <= j.folded {
		j.active, j.off, j.last[other] = other, 0, 0
	}
	return slices.Clone(j.pending)
}

// done records that a fold of the leaves up to number n committed.
func (j *journal) done(n uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.folded = max(j.folded, n)
	i := 0
	for i < len(j.pending) && j.pending[i].n <= n {
		i++
	}
	j.pending = slices.Delete(j.pending, 0, i)
}

// skipped returns the number before the next record if it is above the
// last folded (numbers skipped at open), else 0.
func (j *journal) skipped() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.pending) == 0 && j.next-1 > j.folded {
		return j.next - 1
	}
	return 0
}

// waiting reports whether leaves wait for a fold.
func (j *journal) waiting() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending) > 0
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	var errs []error
	for i, f := range j.files {
		if f != nil {
			errs = append(errs, f.Close())
			j.files[i] = nil
		}
	}
	return errors.Join(errs...)
}

// encodeLeaf appends l to b: its type, then Data, Ref, the stored record,
// Salt, Subject and Actor, each after its length, then Time in
// microseconds (0 for none).
func encodeLeaf(b []byte, l *vault.Leaf) []byte {
	b = append(b, l.Type)
	var rec []byte
	if len(l.Record) > 0 {
		rec = vault.StoredRecord(l)
	}
	for _, f := range [][]byte{l.Data, []byte(l.Ref), rec, l.Salt, []byte(l.Subject), []byte(l.Actor)} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	var t int64
	if !l.Time.IsZero() {
		t = l.Time.UnixMicro()
	}
	return binary.AppendVarint(b, t)
}

// decodeLeaf reverses encodeLeaf. The record comes back as stored, in both
// Record and Packed, so that the Store keeps it as it is.
func decodeLeaf(p []byte) (vault.Leaf, error) {
	var l vault.Leaf
	if len(p) == 0 {
		return l, errors.New("empty record")
	}
	l.Type, p = p[0], p[1:]
	var fields [6][]byte
	for i := range fields {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return l, errors.New("truncated record")
		}
		fields[i], p = p[k:k+int(n)], p[k+int(n):]
	}
	t, k := binary.Varint(p)
	if k <= 0 || k != len(p) {
		return l, errors.New("bad record time")
	}
	l.Data, l.Ref = fields[0], string(fields[1])
	if len(fields[2]) > 0 {
		l.Record, l.Packed = fields[2], fields[2]
	}
	if len(fields[3]) > 0 {
		l.Salt = fields[3]
	}
	l.Subject, l.Actor = string(fields[4]), string(fields[5])
	if t != 0 {
		l.Time = time.UnixMicro(t).UTC()
	}
	return l, nil
}
