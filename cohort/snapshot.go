package cohort

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// The snapshot encoding of an Index: what WriteTo writes and ReadIndex
// reads. It holds the live state only (patients and resources numbered
// densely, dead facts left out), so reading it builds a compacted index.
// It is plain: the caller seals it (package research keeps it in an
// authenticated, encrypted file) and binds it to the log position it
// reflects. Layout, all integers uvarint unless noted:
//
//	magic "fhiranchor-cohort-index-2\n"
//	words:     n, then n-1 strings (id 0 is "")
//	sizes:     the number of facts and of coding ids (to size the slices)
//	patients:  n, then per patient: key, gender id, birthYear, over89 byte,
//	           zip3 id, race ids, ethnicity ids, deceased byte
//	resources: n, then per resource: key, patient number, isDemo byte,
//	           facts: n, then per fact kind byte, flags byte, day (zigzag),
//	           value (8 bytes little endian), unit id, unitCode id, status id,
//	           coding ids, valueCode ids
//	end marker "end\n"
//
// A string is its length and bytes; a list of ids its length and ids.
const snapshotMagic = "fhiranchor-cohort-index-2\n"

// ErrBadSnapshot is wrapped by ReadIndex's errors: the data is not a
// snapshot this version writes, or it is damaged.
var ErrBadSnapshot = errors.New("cohort: not a valid index snapshot")

// WriteTo writes the index's snapshot encoding to w. It holds the read
// lock while it writes: writers wait, queries do not.
func (ix *Index) WriteTo(w io.Writer) (int64, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	bw := &countWriter{w: bufio.NewWriterSize(w, 1<<16)}
	e := &encoder{w: bw}
	e.raw([]byte(snapshotMagic))
	e.uint(uint64(len(ix.words)))
	for _, s := range ix.words[1:] {
		e.str(s)
	}
	arena := 0
	for rn, r := range ix.res {
		if ix.resKeys[rn] != "" {
			for fn := r.first; fn < r.first+r.n; fn++ {
				arena += int(ix.facts[fn].nCodes) + int(ix.facts[fn].nVCodes)
			}
		}
	}
	e.uint(uint64(ix.liveFacts))
	e.uint(uint64(arena))
	// Patients, numbered densely in the order of their numbers.
	dense := make([]uint32, len(ix.patients))
	e.uint(uint64(len(ix.byKey)))
	n := uint32(0)
	for pn, p := range ix.patients {
		if p == nil {
			continue
		}
		dense[pn] = n
		n++
		d := p.demo
		e.str(p.key)
		e.str(d.gender)
		e.uint(uint64(d.birthYear))
		e.bool(d.over89)
		e.str(d.zip3)
		e.strs(d.race)
		e.strs(d.ethnicity)
		e.bool(d.deceased)
	}
	e.uint(uint64(ix.resByKey.live))
	for rn, r := range ix.res {
		key := ix.resKeys[rn]
		if key == "" {
			continue
		}
		e.str(key)
		e.uint(uint64(dense[r.patient]))
		e.bool(r.isDemo)
		e.uint(uint64(r.n))
		for fn := r.first; fn < r.first+r.n; fn++ {
			f := &ix.facts[fn]
			e.raw([]byte{byte(f.kind), f.flags})
			e.int(int64(f.day))
			e.u64(math.Float64bits(f.value))
			e.uint(uint64(f.unit))
			e.uint(uint64(f.unitCode))
			e.uint(uint64(f.status))
			e.ids(ix.codesOf(f))
			e.ids(ix.vcodesOf(f))
		}
	}
	e.raw([]byte("end\n"))
	if e.err == nil {
		e.err = bw.w.(*bufio.Writer).Flush()
	}
	return bw.n, e.err
}

// ReadIndex reads an index from its snapshot encoding (WriteTo).
func ReadIndex(r io.Reader) (*Index, error) {
	d := &decoder{r: bufio.NewReaderSize(r, 1<<16)}
	if string(d.raw(len(snapshotMagic))) != snapshotMagic {
		return nil, fmt.Errorf("%w: unknown format", ErrBadSnapshot)
	}
	ix := NewIndex()
	nw := d.count()
	ix.words = make([]string, 1, max(1, min(nw, 1<<26)))
	for i := 1; i < nw && d.err == nil; i++ {
		s := d.str()
		if _, dup := ix.dict[s]; dup {
			d.fail("repeated word")
		}
		ix.dict[s] = uint32(len(ix.words))
		ix.words = append(ix.words, s)
	}
	nf, na := d.count(), d.count()
	if d.err == nil {
		ix.facts = make([]fact, 0, min(nf, 1<<26))
		ix.arena = make([]uint32, 0, min(na, 1<<26))
	}
	word := func() uint32 {
		id := d.uint()
		if id >= uint64(len(ix.words)) {
			d.fail("word out of range")
			return 0
		}
		return uint32(id)
	}
	np := d.count()
	ix.byKey = make(map[string]uint32, min(np, 1<<26))
	ix.patients = make([]*patient, 0, min(np, 1<<26))
	demoOf := make([]demographics, 0, min(np, 1<<26))
	for range np {
		if d.err != nil {
			break
		}
		key := d.str()
		var dm demographics
		dm.gender = d.str()
		dm.birthYear = int(d.uint())
		dm.over89 = d.bool()
		dm.zip3 = d.str()
		dm.race = d.strs()
		dm.ethnicity = d.strs()
		dm.deceased = d.bool()
		if key == "" {
			d.fail("empty patient key")
			break
		}
		if _, dup := ix.byKey[key]; dup {
			d.fail("repeated patient")
			break
		}
		pn := uint32(len(ix.patients))
		ix.byKey[key] = pn
		ix.patients = append(ix.patients, &patient{key: key})
		ix.universe = ix.universe.set(pn)
		demoOf = append(demoOf, dm)
	}
	nr := d.count()
	ix.resByKey = newKeyTable(min(nr, 1<<26))
	ix.res = make([]resource, 0, min(nr, 1<<26))
	ix.resKeys = make([]string, 0, min(nr, 1<<26))
	for range nr {
		if d.err != nil {
			break
		}
		key := d.str()
		pn := d.uint()
		isDemo := d.bool()
		nf := d.count()
		if key == "" || pn >= uint64(len(ix.patients)) {
			d.fail("bad resource")
			break
		}
		rn, added := ix.resourceLocked(key)
		if !added {
			d.fail("repeated resource")
			break
		}
		p := ix.patients[pn]
		p.resources = append(p.resources, rn)
		r := resource{patient: uint32(pn), first: uint32(len(ix.facts)), isDemo: isDemo}
		if isDemo {
			p.demoRes = rn + 1
		}
		for range nf {
			if d.err != nil {
				break
			}
			k, flags := kind(d.byte()), d.byte()
			if k == kindNone || k >= numKinds || flags&factLive == 0 {
				d.fail("bad fact")
				break
			}
			f := fact{patient: uint32(pn), kind: k, flags: flags}
			f.day = int32(d.int())
			f.value = math.Float64frombits(d.u64())
			f.unit, f.unitCode, f.status = word(), word(), word()
			f.codes, f.nCodes = d.idsInto(&ix.arena, word)
			f.vcodes, f.nVCodes = d.idsInto(&ix.arena, word)
			ix.appendFactLocked(f)
		}
		r.n = uint32(len(ix.facts)) - r.first
		ix.res[rn] = r
	}
	if string(d.raw(4)) != "end\n" && d.err == nil {
		d.fail("no end marker")
	}
	if d.err != nil {
		return nil, d.err
	}
	for pn, p := range ix.patients {
		if len(p.resources) == 0 {
			return nil, fmt.Errorf("%w: a patient without resources", ErrBadSnapshot)
		}
		ix.setDemoLocked(uint32(pn), demoOf[pn])
	}
	return ix, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type encoder struct {
	w   io.Writer
	buf [binary.MaxVarintLen64]byte
	err error
}

func (e *encoder) raw(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}
func (e *encoder) uint(v uint64) { e.raw(binary.AppendUvarint(e.buf[:0], v)) }
func (e *encoder) int(v int64)   { e.raw(binary.AppendVarint(e.buf[:0], v)) }
func (e *encoder) u64(v uint64)  { e.raw(binary.LittleEndian.AppendUint64(e.buf[:0], v)) }
func (e *encoder) str(s string)  { e.uint(uint64(len(s))); e.raw([]byte(s)) }
func (e *encoder) bool(b bool) {
	if b {
		e.raw([]byte{1})
	} else {
		e.raw([]byte{0})
	}
}
func (e *encoder) strs(ss []string) {
	e.uint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}
func (e *encoder) ids(ids []uint32) {
	e.uint(uint64(len(ids)))
	for _, id := range ids {
		e.uint(uint64(id))
	}
}

// maxSnapshotString bounds a string of a snapshot (keys and codes are
// short); a larger length means damage.
const maxSnapshotString = 1 << 16

type decoder struct {
	r       *bufio.Reader
	err     error
	scratch []byte
}

func (d *decoder) fail(reason string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadSnapshot, reason)
	}
}

func (d *decoder) raw(n int) []byte {
	if d.err != nil {
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail("truncated")
		return nil
	}
	return b
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d.r)
	if err != nil {
		d.fail("truncated")
	}
	return v
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(d.r)
	if err != nil {
		d.fail("truncated")
	}
	return v
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	var b [8]byte
	if _, err := io.ReadFull(d.r, b[:]); err != nil {
		d.fail("truncated")
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

// count reads a number of items; an absurd one means damage.
func (d *decoder) count() int {
	n := d.uint()
	if n > 1<<32 {
		d.fail("count out of range")
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.uint()
	if n > maxSnapshotString {
		d.fail("string too long")
		return ""
	}
	if d.err != nil {
		return ""
	}
	if cap(d.scratch) < int(n) {
		d.scratch = make([]byte, n)
	}
	b := d.scratch[:n]
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail("truncated")
		return ""
	}
	return string(b)
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	b, err := d.r.ReadByte()
	if err != nil {
		d.fail("truncated")
	}
	return b
}

func (d *decoder) bool() bool { return d.byte() == 1 }

func (d *decoder) strs() []string {
	n := d.uint()
	if n > maxSnapshotString {
		d.fail("list too long")
		return nil
	}
	var out []string
	for range n {
		out = append(out, d.str())
	}
	return out
}

// idsInto appends a list of word ids to the arena.
func (d *decoder) idsInto(arena *[]uint32, word func() uint32) (uint32, uint16) {
	n := d.uint()
	if n >= 1<<16 {
		d.fail("list too long")
		return 0, 0
	}
	off := uint32(len(*arena))
	for range n {
		*arena = append(*arena, word())
	}
	return off, uint16(n)
}
