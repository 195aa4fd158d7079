package cohort

import (
	"errors"
	"fmt"
	"maps"
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

// fact is one clinical fact of one resource. An Observation with components
// gives one fact per component besides its own.
type fact struct {
	patient   uint32
	kind      kind
	live      bool
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
	resources map[string]struct{}
	demo      demographics
	demoKey   string   // key of the Patient resource the demographics came from
	facts     []uint32 // facts of the patient's resources, for windows over few patients
}

type resource struct {
	patient uint32
	facts   []uint32
	isDemo  bool
}

// Index holds the facts of de-identified resources in memory and answers
// cohort queries over them. It is safe for concurrent use.
//
// Patients are numbered densely (numbers are reused after removal) so that
// sets of patients are bitsets; facts are found through postings per code and
// per kind, and demographics through postings per value.
type Index struct {
	mu        sync.RWMutex
	byKey     map[string]uint32
	patients  []*patient // by number; nil = free
	free      []uint32
	universe  bitset
	resources map[string]*resource
	facts     []fact
	freeFacts []uint32
	liveFacts int
	byCode    map[string]map[uint32]struct{} // kind byte + "system|code" -> fact numbers
	byKind    [numKinds]map[uint32]struct{}
	demo      map[string]bitset // dimension + "\x00" + value -> patients
	gen       uint64            // changes with every change of the facts; keys sets
	sets      setCache          // evaluated queries for the overlap control, per gen
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	ix := &Index{
		byKey:     map[string]uint32{},
		resources: map[string]*resource{},
		byCode:    map[string]map[uint32]struct{}{},
		demo:      map[string]bitset{},
	}
	for k := range ix.byKind {
		ix.byKind[k] = map[uint32]struct{}{}
	}
	return ix
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
	return Stats{Patients: len(ix.byKey), Resources: len(ix.resources), Facts: ix.liveFacts}
}

// ErrBadResource is wrapped by Put's errors.
var ErrBadResource = errors.New("cohort: resource not indexable")

// Put indexes one de-identified resource under key, replacing the facts an
// earlier Put of the same key gave (the resource may even move to another
// patient). patient is the caller's opaque key of the patient the resource
// belongs to; typ is its resourceType and tree its JSON tree as fhir.Decode
// returns it. Resources of types the index has no facts for are still
// recorded, so that Resources lists them. Malformed parts of a tree are
// skipped, not reported: the tree was validated before de-identification.
func (ix *Index) Put(key, patientKey, typ string, tree map[string]any) error {
	if key == "" || patientKey == "" || typ == "" {
		return fmt.Errorf("%w: empty key, patient or type", ErrBadResource)
	}
	if tree == nil {
		return fmt.Errorf("%w: no tree", ErrBadResource)
	}
	if rt, ok := tree["resourceType"].(string); ok && rt != typ {
		return fmt.Errorf("%w: resourceType differs from the type given", ErrBadResource)
	}
	// Extract outside the lock: it is the costly part.
	var (
		facts []fact
		demo  *demographics
	)
	if typ == "Patient" {
		d := extractDemographics(tree)
		demo = &d
	} else {
		facts = extractFacts(typ, tree)
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.gen++
	ix.deleteLocked(key)
	pn := ix.patientLocked(patientKey)
	p := ix.patients[pn]
	p.resources[key] = struct{}{}
	r := &resource{patient: pn}
	if demo != nil {
		ix.setDemoLocked(pn, *demo)
		p.demoKey = key
		r.isDemo = true
	}
	for _, f := range facts {
		f.patient = pn
		r.facts = append(r.facts, ix.addFactLocked(f))
	}
	p.facts = append(p.facts, r.facts...)
	ix.resources[key] = r
	return nil
}

// Delete removes the resource indexed under key, if any. A patient left with
// no resources is removed too.
func (ix *Index) Delete(key string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.deleteLocked(key)
}

// RemovePatient removes every resource and fact of a patient (erasure).
func (ix *Index) RemovePatient(patientKey string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	pn, ok := ix.byKey[patientKey]
	if !ok {
		return
	}
	ix.patients[pn].facts = nil // each deleteLocked would otherwise search it
	for _, key := range slices.Collect(maps.Keys(ix.patients[pn].resources)) {
		ix.deleteLocked(key)
	}
}

// Resources returns the keys of a patient's indexed resources, sorted.
func (ix *Index) Resources(patientKey string) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	pn, ok := ix.byKey[patientKey]
	if !ok {
		return nil
	}
	return slices.Sorted(maps.Keys(ix.patients[pn].resources))
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
	ix.patients[pn] = &patient{key: key, resources: map[string]struct{}{}}
	ix.byKey[key] = pn
	ix.universe = ix.universe.set(pn)
	return pn
}

func (ix *Index) deleteLocked(key string) {
	r, ok := ix.resources[key]
	if !ok {
		return
	}
	ix.gen++
	delete(ix.resources, key)
	for _, fn := range r.facts {
		ix.removeFactLocked(fn)
	}
	p := ix.patients[r.patient]
	if len(r.facts) > 0 {
		p.facts = slices.DeleteFunc(p.facts, func(fn uint32) bool { return slices.Contains(r.facts, fn) })
	}
	delete(p.resources, key)
	if r.isDemo && p.demoKey == key {
		ix.setDemoLocked(r.patient, demographics{})
		p.demoKey = ""
	}
	if len(p.resources) == 0 {
		ix.setDemoLocked(r.patient, demographics{})
		delete(ix.byKey, p.key)
		ix.patients[r.patient] = nil
		ix.free = append(ix.free, r.patient)
		ix.universe.clear(r.patient)
	}
}

func (ix *Index) addFactLocked(f fact) uint32 {
	f.live = true
	var fn uint32
	if n := len(ix.freeFacts); n > 0 {
		fn = ix.freeFacts[n-1]
		ix.freeFacts = ix.freeFacts[:n-1]
		ix.facts[fn] = f
	} else {
		fn = uint32(len(ix.facts))
		ix.facts = append(ix.facts, f)
	}
	for _, c := range f.codes {
		ck := codeKey(f.kind, c)
		set := ix.byCode[ck]
		if set == nil {
			set = map[uint32]struct{}{}
			ix.byCode[ck] = set
		}
		set[fn] = struct{}{}
	}
	ix.byKind[f.kind][fn] = struct{}{}
	ix.liveFacts++
	return fn
}

func (ix *Index) removeFactLocked(fn uint32) {
	f := &ix.facts[fn]
	for _, c := range f.codes {
		ck := codeKey(f.kind, c)
		if set := ix.byCode[ck]; set != nil {
			delete(set, fn)
			if len(set) == 0 {
				delete(ix.byCode, ck)
			}
		}
	}
	delete(ix.byKind[f.kind], fn)
	*f = fact{}
	ix.freeFacts = append(ix.freeFacts, fn)
	ix.liveFacts--
}

func codeKey(k kind, code string) string { return string(rune('0'+k)) + code }

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
