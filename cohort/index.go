package cohort

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// kind is the kind of a clinical fact, named in queries by factKinds.
type kind uint8

const (
	kindNone kind = iota
	kindCondition
	kindObservation
	kindMedication
	kindEncounter
	kindProcedure
	kindImmunization
	kindReport
	numKinds
)

// rawFact is one clinical fact as extracted from a resource, before its
// strings are interned. An Observation with components gives one fact per
// component besides its own.
type rawFact struct {
	kind      kind
	hasDay    bool
	hasValue  bool
	day       int32 // days since 1970-01-01 UTC
	value     float64
	unit      string // valueQuantity.unit
	unitCode  string // valueQuantity.code (UCUM)
	status    string
	codes     []string // "system|code"
	valueCode []string // valueCodeableConcept codings
}

// Fact flags.
const (
	factLive uint8 = 1 << iota
	factHasDay
	factHasValue
)

// fact is one clinical fact as the index keeps it: 48 bytes, strings
// interned (dictionary ids, 0 = none) and codings in the shared arena.
type fact struct {
	patient  uint32
	day      int32 // days since 1970-01-01 UTC
	value    float64
	unit     uint32
	unitCode uint32
	status   uint32
	codes    uint32 // offset of the sorted coding ids in Index.arena
	vcodes   uint32 // offset of the valueCodeableConcept coding ids
	nCodes   uint16
	nVCodes  uint16
	kind     kind
	flags    uint8
}

func (f *fact) live() bool     { return f.flags&factLive != 0 }
func (f *fact) hasDay() bool   { return f.flags&factHasDay != 0 }
func (f *fact) hasValue() bool { return f.flags&factHasValue != 0 }

// demographics are the facts of a patient's Patient resource.
type demographics struct {
	gender    string
	birthYear int  // 0 = unknown
	over89    bool // the "90+" age band instead of a birth year
	zip3      string
	race      []string // OMB category codes, sorted
	ethnicity []string
	deceased  bool
}

type patient struct {
	key       string
	resources []uint32 // resource numbers
	demo      demographics
	demoRes   uint32 // resource number + 1 of the Patient the demographics came from; 0 = none
}

// resource is one indexed resource; its facts are Index.facts[first:first+n].
type resource struct {
	patient uint32
	first   uint32
	n       uint32
	isDemo  bool
}

// Index holds the facts of de-identified resources in memory and answers
// cohort queries over them. It is safe for concurrent use.
//
// The layout is columnar and compact (see the package documentation, Memory):
// patients are numbered densely (numbers are reused after removal) so that
// sets of patients are bitsets; facts live in one slice, appended in order,
// so the postings per code and per kind are sorted slices of fact numbers;
// strings are interned. A replaced or deleted resource leaves dead facts
// behind, which compaction drops once they outnumber the live ones.
type Index struct {
	mu        sync.RWMutex
	byKey     map[string]uint32
	patients  []*patient // by number; nil = free
	free      []uint32
	universe  bitset
	resByKey  keyTable   // resource key -> resource number
	res       []resource // by number
	resKeys   []string   // by number; "" = free
	freeRes   []uint32
	facts     []fact
	arena     []uint32 // coding ids of facts
	liveFacts int
	dict      map[string]uint32 // interned strings; id 0 is ""
	words     []string          // by id
	byCode    map[uint64][]uint32
	byKind    [numKinds][]uint32
	demo      map[string]bitset // dimension + "\x00" + value -> patients
	gen       uint64            // changes with every change of the facts; keys sets
	sets      setCache          // evaluated queries for the overlap control, per gen
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		byKey:    map[string]uint32{},
		resByKey: newKeyTable(0),
		dict:     map[string]uint32{"": 0},
		words:    []string{""},
		byCode:   map[uint64][]uint32{},
		demo:     map[string]bitset{},
	}
}

// Stats counts what an Index holds.
type Stats struct {
	Patients  int `json:"patients"`
	Resources int `json:"resources"`
	Facts     int `json:"facts"`
}

// Stats returns the number of patients, resources and clinical facts indexed.
func (ix *Index) Stats() Stats {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return Stats{Patients: len(ix.byKey), Resources: ix.resByKey.live, Facts: ix.liveFacts}
}

// ErrBadResource is wrapped by Put's errors.
var ErrBadResource = errors.New("cohort: resource not indexable")

// Entry is what the index takes from one de-identified resource: the
// demographics of a Patient or the clinical facts of another resource. The
// zero Entry records a resource without facts.
type Entry struct {
	demo  *demographics
	facts []rawFact
}

// Extract reads the facts the index keeps of a de-identified resource of
// type typ, tree its JSON tree as fhir.Decode returns it. Malformed parts of
// a tree are skipped, not reported: the tree was validated before
// de-identification. The writer extracts at write time, from the copy it
// has just made, so that the index need not open and decode the copy again.
func Extract(typ string, tree map[string]any) (Entry, error) {
	if typ == "" {
		return Entry{}, fmt.Errorf("%w: empty type", ErrBadResource)
	}
	if tree == nil {
		return Entry{}, fmt.Errorf("%w: no tree", ErrBadResource)
	}
	if rt, ok := tree["resourceType"].(string); ok && rt != typ {
		return Entry{}, fmt.Errorf("%w: resourceType differs from the type given", ErrBadResource)
	}
	if typ == "Patient" {
		d := extractDemographics(tree)
		return Entry{demo: &d}, nil
	}
	return Entry{facts: extractFacts(typ, tree)}, nil
}

// Put indexes one de-identified resource under key, replacing the facts an
// earlier Put of the same key gave (the resource may even move to another
// patient). patient is the caller's opaque key of the patient the resource
// belongs to; typ is its resourceType and tree its JSON tree as fhir.Decode
// returns it. Resources of types the index has no facts for are still
// recorded, so that Resources lists them.
func (ix *Index) Put(key, patientKey, typ string, tree map[string]any) error {
	e, err := Extract(typ, tree) // outside the lock: it is the costly part
	if err != nil {
		return err
	}
	return ix.PutEntry(key, patientKey, e)
}

// PutEntry is Put with the facts already extracted (Extract).
func (ix *Index) PutEntry(key, patientKey string, e Entry) error {
	if key == "" || patientKey == "" {
		return fmt.Errorf("%w: empty key or patient", ErrBadResource)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.putLocked(key, patientKey, e)
	ix.maybeCompactLocked()
	return nil
}

func (ix *Index) putLocked(key, patientKey string, e Entry) {
	ix.gen++
	ix.deleteLocked(key)
	pn := ix.patientLocked(patientKey)
	p := ix.patients[pn]
	rn, _ := ix.resourceLocked(key) // new: deleteLocked removed it
	p.resources = append(p.resources, rn)
	r := resource{patient: pn, first: uint32(len(ix.facts))}
	if e.demo != nil {
		ix.setDemoLocked(pn, *e.demo)
		p.demoRes = rn + 1
		r.isDemo = true
	}
	for i := range e.facts {
		ix.addFactLocked(pn, &e.facts[i])
	}
	r.n = uint32(len(ix.facts)) - r.first
	ix.res[rn] = r
}

// Delete removes the resource indexed under key, if any. A patient left with
// no resources is removed too.
func (ix *Index) Delete(key string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.deleteLocked(key)
	ix.maybeCompactLocked()
}

// RemovePatient removes every resource and fact of a patient (erasure).
func (ix *Index) RemovePatient(patientKey string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	pn, ok := ix.byKey[patientKey]
	if !ok {
		return
	}
	for _, rn := range slices.Clone(ix.patients[pn].resources) {
		ix.deleteLocked(ix.resKeys[rn])
	}
	ix.maybeCompactLocked()
}

// Resources returns the keys of a patient's indexed resources, sorted.
func (ix *Index) Resources(patientKey string) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	pn, ok := ix.byKey[patientKey]
	if !ok {
		return nil
	}
	var out []string
	for _, rn := range ix.patients[pn].resources {
		out = append(out, ix.resKeys[rn])
	}
	slices.Sort(out)
	return out
}

func (ix *Index) patientLocked(key string) uint32 {
	if pn, ok := ix.byKey[key]; ok {
		return pn
	}
	var pn uint32
	if n := len(ix.free); n > 0 {
		pn = ix.free[n-1]
		ix.free = ix.free[:n-1]
	} else {
		pn = uint32(len(ix.patients))
		ix.patients = append(ix.patients, nil)
	}
	ix.patients[pn] = &patient{key: key}
	ix.byKey[key] = pn
	ix.universe = ix.universe.set(pn)
	return pn
}

// resourceLocked numbers a new resource key; added is false (and the
// number meaningless) when key has one already.
func (ix *Index) resourceLocked(key string) (rn uint32, added bool) {
	if n := len(ix.freeRes); n > 0 {
		rn = ix.freeRes[n-1]
	} else {
		rn = uint32(len(ix.res))
	}
	if !ix.resByKey.put(key, rn, ix.resKeys) {
		return 0, false
	}
	if n := len(ix.freeRes); n > 0 {
		ix.freeRes = ix.freeRes[:n-1]
		ix.resKeys[rn] = key
	} else {
		ix.res = append(ix.res, resource{})
		ix.resKeys = append(ix.resKeys, key)
	}
	return rn, true
}

func (ix *Index) deleteLocked(key string) {
	rn, ok := ix.resByKey.get(key, ix.resKeys)
	if !ok {
		return
	}
	ix.gen++
	r := ix.res[rn]
	ix.resByKey.remove(key, ix.resKeys)
	ix.resKeys[rn] = ""
	ix.res[rn] = resource{}
	ix.freeRes = append(ix.freeRes, rn)
	for fn := r.first; fn < r.first+r.n; fn++ {
		ix.facts[fn].flags &^= factLive
		ix.liveFacts--
	}
	p := ix.patients[r.patient]
	if i := slices.Index(p.resources, rn); i >= 0 {
		last := len(p.resources) - 1
		p.resources[i] = p.resources[last]
		p.resources = p.resources[:last]
	}
	if r.isDemo && p.demoRes == rn+1 {
		ix.setDemoLocked(r.patient, demographics{})
		p.demoRes = 0
	}
	if len(p.resources) == 0 {
		ix.setDemoLocked(r.patient, demographics{})
		delete(ix.byKey, p.key)
		ix.patients[r.patient] = nil
		ix.free = append(ix.free, r.patient)
		ix.universe.clear(r.patient)
	}
}

// intern returns the dictionary id of s. The dictionary only grows (until
// compaction): its words are codes, units and statuses, a vocabulary.
func (ix *Index) intern(s string) uint32 {
	if id, ok := ix.dict[s]; ok {
		return id
	}
	id := uint32(len(ix.words))
	ix.dict[s] = id
	ix.words = append(ix.words, s)
	return id
}

// lookup returns the dictionary id of s, if the index has it.
func (ix *Index) lookup(s string) (uint32, bool) {
	id, ok := ix.dict[s]
	return id, ok
}

// internAll appends the sorted, unique ids of ss to the arena.
func (ix *Index) internAll(ss []string) (off uint32, n uint16) {
	off = uint32(len(ix.arena))
	for _, s := range ss {
		ix.arena = append(ix.arena, ix.intern(s))
	}
	ids := ix.arena[off:]
	slices.Sort(ids)
	ids = slices.Compact(ids)
	ix.arena = ix.arena[:int(off)+len(ids)]
	return off, uint16(min(len(ids), 1<<16-1))
}

func (ix *Index) codesOf(f *fact) []uint32  { return ix.arena[f.codes : f.codes+uint32(f.nCodes)] }
func (ix *Index) vcodesOf(f *fact) []uint32 { return ix.arena[f.vcodes : f.vcodes+uint32(f.nVCodes)] }

func postingKey(k kind, code uint32) uint64 { return uint64(k)<<32 | uint64(code) }

func (ix *Index) addFactLocked(pn uint32, rf *rawFact) {
	f := fact{patient: pn, day: rf.day, value: rf.value, kind: rf.kind, flags: factLive,
		unit: ix.intern(rf.unit), unitCode: ix.intern(rf.unitCode), status: ix.intern(rf.status)}
	if rf.hasDay {
		f.flags |= factHasDay
	}
	if rf.hasValue {
		f.flags |= factHasValue
	}
	f.codes, f.nCodes = ix.internAll(rf.codes)
	f.vcodes, f.nVCodes = ix.internAll(rf.valueCode)
	ix.appendFactLocked(f)
}

// appendFactLocked adds f as the newest fact and posts it.
func (ix *Index) appendFactLocked(f fact) {
	fn := uint32(len(ix.facts))
	ix.facts = append(ix.facts, f)
	for _, c := range ix.codesOf(&f) {
		k := postingKey(f.kind, c)
		ix.byCode[k] = append(ix.byCode[k], fn)
	}
	ix.byKind[f.kind] = append(ix.byKind[f.kind], fn)
	ix.liveFacts++
}

// maybeCompactLocked compacts once dead facts outnumber the live ones (and
// are many), so that replacing resources again and again costs bounded
// memory and postings stay mostly live.
func (ix *Index) maybeCompactLocked() {
	dead := len(ix.facts) - ix.liveFacts
	if dead > 1<<14 && dead > ix.liveFacts {
		ix.compactLocked()
	}
}

// compactLocked renumbers the live facts densely, in resource order, and
// rebuilds the arena, the dictionary and the postings from them.
func (ix *Index) compactLocked() {
	old, oldArena, oldWords := ix.facts, ix.arena, ix.words
	ix.facts = make([]fact, 0, ix.liveFacts)
	ix.arena = make([]uint32, 0, len(oldArena)/2+1)
	ix.dict, ix.words = map[string]uint32{"": 0}, []string{""}
	ix.byCode = map[uint64][]uint32{}
	for k := range ix.byKind {
		ix.byKind[k] = nil
	}
	ix.liveFacts = 0
	reintern := func(ids []uint32) (uint32, uint16) {
		ss := make([]string, len(ids))
		for i, id := range ids {
			ss[i] = oldWords[id]
		}
		return ix.internAll(ss)
	}
	for rn := range ix.res {
		r := &ix.res[rn]
		if ix.resKeys[rn] == "" {
			continue
		}
		first := uint32(len(ix.facts))
		for fn := r.first; fn < r.first+r.n; fn++ {
			f := old[fn]
			f.unit = ix.intern(oldWords[f.unit])
			f.unitCode = ix.intern(oldWords[f.unitCode])
			f.status = ix.intern(oldWords[f.status])
			f.codes, f.nCodes = reintern(oldArena[f.codes : f.codes+uint32(f.nCodes)])
			f.vcodes, f.nVCodes = reintern(oldArena[f.vcodes : f.vcodes+uint32(f.nVCodes)])
			ix.appendFactLocked(f)
		}
		r.first = first
	}
	ix.gen++
}

// demoKeys lists the postings a patient's demographics belong to.
func demoKeys(d demographics) []string {
	var keys []string
	if d.gender != "" {
		keys = append(keys, "gender\x00"+d.gender)
	}
	if d.over89 {
		keys = append(keys, "year\x0090+")
	} else if d.birthYear != 0 {
		keys = append(keys, fmt.Sprintf("year\x00%d", d.birthYear))
	}
	if d.zip3 != "" {
		keys = append(keys, "zip3\x00"+d.zip3)
	}
	for _, r := range d.race {
		keys = append(keys, "race\x00"+r)
	}
	for _, e := range d.ethnicity {
		keys = append(keys, "ethnicity\x00"+e)
	}
	if d.deceased {
		keys = append(keys, "deceased\x00true")
	}
	return keys
}

func (ix *Index) setDemoLocked(pn uint32, d demographics) {
	p := ix.patients[pn]
	for _, k := range demoKeys(p.demo) {
		b := ix.demo[k]
		b.clear(pn)
		if b.empty() {
			delete(ix.demo, k)
		}
	}
	p.demo = d
	for _, k := range demoKeys(d) {
		ix.demo[k] = ix.demo[k].set(pn)
	}
}

// Patients calls fn with the key of every indexed patient, under the read
// lock (fn must not call back into the index).
func (ix *Index) Patients(fn func(key string)) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for _, p := range ix.patients {
		if p != nil {
			fn(p.key)
		}
	}
}
