package deid

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Keys are the engine's secrets. CryptoHash and DateShift are required (at
// least 32 bytes each): they define the pseudonym and date-shift domains.
// Encrypt (exactly 32 bytes, AES-256) is required only when a rule encrypts.
type Keys struct {
	DateShift, CryptoHash, Encrypt []byte
}

// Engine applies one profile. It is safe for concurrent use.
type Engine struct {
	cfg        Config
	rules      []*compiledRule
	rev        string
	keys       Keys
	aead       cipher.AEAD
	urls       map[string]bool // extension urls some rule names
	restricted map[string]bool
	shiftMin   int
	shiftRange int
	shifts     bool // some rule shifts dates
	marker     string
	roots      sync.Map // resource type -> *state
}

type compiledRule struct {
	Rule
	segs []string // Path split at dots
}

// New compiles cfg (which it validates) with keys.
func New(cfg *Config, keys Keys) (*Engine, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: nil config", ErrInvalidConfig)
	}
	c := *cfg
	c.Rules = slices.Clone(cfg.Rules)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(keys.CryptoHash) < 32 || len(keys.DateShift) < 32 {
		return nil, errors.New("de-identification keys: cryptoHash and dateShift keys need at least 32 bytes")
	}
	e := &Engine{
		cfg:        c,
		keys:       Keys{DateShift: slices.Clone(keys.DateShift), CryptoHash: slices.Clone(keys.CryptoHash), Encrypt: slices.Clone(keys.Encrypt)},
		urls:       map[string]bool{},
		restricted: map[string]bool{},
		marker:     c.Parameters.Marker,
	}
	e.shiftMin, e.shiftRange = c.Parameters.shiftBounds()
	if e.marker == "" {
		e.marker = defaultMarker
	}
	zips := c.Parameters.RestrictedZip3
	if zips == nil {
		zips = defaultRestrictedZip3
	}
	for _, z := range zips {
		e.restricted[z] = true
	}
	for i := range c.Rules {
		r := &compiledRule{Rule: c.Rules[i]}
		if r.Path != "" {
			r.segs = strings.Split(r.Path, ".")
		}
		if r.URL != "" {
			e.urls[r.URL] = true
		}
		e.shifts = e.shifts || r.Method == MethodDateShift
		if r.Method == MethodEncrypt && e.aead == nil {
			if len(keys.Encrypt) != 32 {
				return nil, errors.New("de-identification keys: encrypt needs a 32-byte key")
			}
			aead, err := newAEAD(keys.Encrypt)
			if err != nil {
				return nil, err
			}
			e.aead = aead
		}
		e.rules = append(e.rules, r)
	}
	rev, err := c.revision()
	if err != nil {
		return nil, err
	}
	e.rev = rev
	return e, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create GCM: %w", err)
	}
	return aead, nil
}

// Revision is the hex SHA-256 of the engine's semantics version and the
// profile's canonical form; it names the profile in records, and changes
// when either changes.
func (e *Engine) Revision() string { return e.rev }

// Config returns a copy of the engine's profile.
func (e *Engine) Config() Config {
	c := e.cfg
	c.Rules = slices.Clone(e.cfg.Rules)
	return c
}

// Options are per-call inputs of Apply.
type Options struct {
	// Patient is the patient compartment "Patient/<id>" the resource belongs
	// to, or "" if none. It keys the date shift, so all of a patient's
	// resources move by the same number of days.
	Patient string
	// Now is the reference time for ages (birthYear); zero means time.Now.
	Now time.Time
	// Subject is what the gateway knows about the patient of the
	// compartment (may be zero).
	Subject Subject
}

// Subject describes the patient a resource belongs to and the people
// around them, as stored.
type Subject struct {
	// BirthDate is the patient's Patient.birthDate as stored (a FHIR date),
	// "" if unknown. A patient over 89 at Options.Now has every date of
	// their copies cut to the (shifted) year.
	BirthDate string
	// Known are identifying strings of the compartment and the people
	// around it (Lexicon of the patient's Patient and of the other
	// resources of the same request). clean and vet remove them wherever
	// they occur, as they do the resource's own.
	Known []string

	// known is Known compiled once by NewSubject, so the copies of one
	// request share it; nil: compiled by each Apply.
	known *matcher
}

// NewSubject returns a Subject with Known compiled once: pass it to every
// Apply of one request rather than a Subject literal, which each Apply
// compiles again (a request's lexicon has hundreds of terms).
func NewSubject(birthDate string, known []string) Subject {
	return Subject{BirthDate: birthDate, Known: known, known: newMatcher(known)}
}

// Result is a de-identified resource and what was done to it.
type Result struct {
	Tree    map[string]any
	Changes []Change
	Labels  []string // v3-ObservationValue codes added to meta.security
}

// Change records one element a rule changed. Path is a FHIRPath-like
// location with indices of the input element ("Patient.name[0]",
// "Patient.extension[4].valueAddress.city"); it never holds a value.
// Elements removed because what was left of them was invalid FHIR carry
// Rule "(invalid)"; required elements replaced by a data-absent-reason
// extension carry Rule "(required)".
type Change struct {
	Rule   string `json:"rule"`
	Path   string `json:"path"`
	Method string `json:"method"`
}

// ErrNotResource reports a tree whose resourceType is missing, unknown, or
// not typ.
var ErrNotResource = errors.New("not a FHIR R4 resource of the given type")

// maxDepth bounds the walk: a validated resource is at most 64 deep.
const maxDepth = 128

// Apply de-identifies tree, a resource of type typ, and returns a new tree;
// tree itself is never modified.
func (e *Engine) Apply(typ string, tree map[string]any, o Options) (*Result, error) {
	if rt, _ := tree["resourceType"].(string); rt != typ || schema().resources[typ] == nil {
		return nil, ErrNotResource
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	w := &walker{e: e, opts: o, shift: e.DateShiftDays(o.Patient)}
	w.old = o.Subject.BirthDate != "" && w.over89At(o.Subject.BirthDate, o.Now, "")
	if typ == "Patient" {
		if b, _ := tree["birthDate"].(string); b != "" && w.over89At(b, o.Now, deceasedOf(tree)) {
			w.old = true
		}
	}
	out := w.resource(tree)
	res := &Result{Tree: out, Changes: w.changes}
	for _, l := range labelOrder {
		if w.allLabels&l.bit != 0 {
			res.Labels = append(res.Labels, l.code)
		}
	}
	return res, nil
}

// state is one schema position: a member reached from a resource root
// through a path of element names (and, for extensions a rule names, their
// url). The first rule matching it is computed once and cached, so a walk
// is map lookups.
type state struct {
	parent *state
	mem    *member  // nil at a resource root
	msg    *message // the element's type
	url    string
	depth  int
	rules  []*compiledRule // the rules matching this position, in profile order
	own    *compiledRule   // the first of them
	kids   sync.Map        // kidKey -> *state
}

type kidKey struct {
	json, url string
}

func (e *Engine) root(typ string) *state {
	if s, ok := e.roots.Load(typ); ok {
		return s.(*state)
	}
	m := schema().resources[typ]
	if m == nil {
		return nil
	}
	s, _ := e.roots.LoadOrStore(typ, &state{msg: m})
	return s.(*state)
}

func (st *state) child(e *Engine, mem *member, url string) *state {
	if !e.urls[url] {
		url = ""
	}
	k := kidKey{mem.json, url}
	if s, ok := st.kids.Load(k); ok {
		return s.(*state)
	}
	c := &state{parent: st, mem: mem, msg: mem.msg, url: url, depth: st.depth + 1}
	for _, r := range e.rules {
		if c.matches(r) {
			c.rules = append(c.rules, r)
			if !r.conditional() {
				break // no later rule can decide
			}
		}
	}
	if len(c.rules) > 0 {
		c.own = c.rules[0]
	}
	s, _ := st.kids.LoadOrStore(k, c)
	return s.(*state)
}

func (st *state) typeIs(t string) bool {
	if st.mem == nil { // resource root
		switch t {
		case st.msg.typ, "Resource":
			return true
		case "DomainResource":
			return st.msg.typ != "Bundle" && st.msg.typ != "Binary" && st.msg.typ != "Parameters"
		}
		return false
	}
	return st.msg != nil && (st.msg.typ == t || (st.msg.base != "" && st.msg.base == t))
}

func (st *state) matches(r *compiledRule) bool {
	if r.Type != "" && !st.typeIs(r.Type) {
		return false
	}
	if r.URL != "" && (st.url != r.URL || st.msg == nil || st.msg.typ != "Extension") {
		return false
	}
	if len(r.segs) == 1 {
		return st.typeIs(r.segs[0])
	}
	if len(r.segs) > 1 {
		a := st
		for i := len(r.segs) - 1; i >= 1; i-- {
			if a.mem == nil || (r.segs[i] != a.mem.name && r.segs[i] != a.mem.json) {
				return false
			}
			a = a.parent
		}
		if !a.typeIs(r.segs[0]) {
			return false
		}
	}
	return true
}

// Security labels (http://terminology.hl7.org/CodeSystem/v3-ObservationValue),
// as the Microsoft anonymizer writes them.
const labelSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"

type label uint8

const (
	labelRedacted label = 1 << iota
	labelCryptoHash
	labelMasked
	labelPerturbed
	labelSubstituted
	labelGeneralized
)

var labelOrder = []struct {
	bit           label
	code, display string
}{
	{labelRedacted, "REDACTED", "redacted"},
	{labelCryptoHash, "CRYTOHASH", "cryptographic hash function"},
	{labelMasked, "MASKED", "masked"},
	{labelPerturbed, "PERTURBED", "exact value is replaced with another exact value"},
	{labelSubstituted, "SUBSTITUTED", "exact value is replaced with a predefined value"},
	{labelGeneralized, "GENERALIZED", "exact value is replaced with a general value"},
}

var methodLabel = map[string]label{
	MethodRedact: labelRedacted, MethodClean: labelRedacted, MethodVet: labelRedacted, MethodCryptoHash: labelCryptoHash,
	MethodEncrypt: labelMasked, MethodDateShift: labelPerturbed, MethodPerturb: labelPerturbed,
	MethodSubstitute: labelSubstituted, MethodGeneralize: labelGeneralized,
}

const (
	ruleInvalid  = "(invalid)"
	ruleRequired = "(required)"
	ruleUnknown  = "(unknown)"

	// AgeBandURL is the extension Apply adds to a resource whose birth date
	// it removed because the person is over 89; its valueString is "90+".
	AgeBandURL = "https://fhiranchor.org/fhir/StructureDefinition/age-band"
	// AgeBandURL is set only on resources about the person themselves.
	// DataAbsentReasonURL marks a required element whose value was removed.
	DataAbsentReasonURL = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
)

type seg struct {
	name string
	idx  int // -1: no index
}

type walker struct {
	e         *Engine
	opts      Options
	shift     int
	path      []seg
	changes   []Change
	labels    label // of the resource being walked
	allLabels label
	rootIn    map[string]any // input of the resource being walked (for clean and birthYear)
	terms     *matcher       // identifying strings of rootIn; built on first use
	known     *matcher       // Subject.Known; built on first use unless NewSubject did
	ageBand   bool
	old       bool // the patient is over 89: dates to the (shifted) year
	depth     int
	cur       map[string]any // the input element whose members are being walked
}

func (w *walker) record(rule, method string) {
	var b strings.Builder
	for i, s := range w.path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.name)
		if s.idx >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.idx))
			b.WriteByte(']')
		}
	}
	w.changes = append(w.changes, Change{Rule: rule, Path: b.String(), Method: method})
	w.labels |= methodLabel[method]
}

func (w *walker) push(name string, idx int) { w.path = append(w.path, seg{name, idx}) }
func (w *walker) pop()                      { w.path = w.path[:len(w.path)-1] }

// resource walks one resource (the root, a contained one or a Bundle
// entry's) and labels it. It returns nil for an unknown type.
func (w *walker) resource(in map[string]any) map[string]any {
	typ, _ := in["resourceType"].(string)
	st := w.e.root(typ)
	if st == nil {
		return nil
	}
	saved := *w
	w.labels, w.rootIn, w.terms, w.ageBand = 0, in, nil, false
	if len(w.path) == 0 {
		w.push(typ, -1)
		defer w.pop()
	}
	out := w.object(st, in, nil)
	if w.ageBand && personResources[typ] {
		ext, _ := out["extension"].([]any)
		out["extension"] = append(ext, map[string]any{"url": AgeBandURL, "valueString": "90+"})
	}
	if w.labels != 0 {
		addLabels(out, w.labels)
	}
	w.allLabels |= w.labels
	nested := w.labels
	w.rootIn, w.terms, w.ageBand = saved.rootIn, saved.terms, saved.ageBand
	w.labels = saved.labels | nested
	return out
}

func addLabels(out map[string]any, l label) {
	meta, _ := out["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		out["meta"] = meta
	}
	sec, _ := meta["security"].([]any)
	for _, lo := range labelOrder {
		if l&lo.bit == 0 {
			continue
		}
		dup := false
		for _, c := range sec {
			if m, ok := c.(map[string]any); ok && m["system"] == labelSystem && m["code"] == lo.code {
				dup = true
				break
			}
		}
		if !dup {
			sec = append(sec, map[string]any{"system": labelSystem, "code": lo.code, "display": lo.display})
		}
	}
	meta["security"] = sec
}

// object walks a complex element (or a resource, or a primitive's extension
// holder) and returns its de-identified copy, or nil when nothing valid is
// left. forced is the rule of an enclosing element whose method applies to
// every primitive below it.
func (w *walker) object(st *state, in map[string]any, forced *compiledRule) map[string]any {
	if w.depth >= maxDepth {
		return nil
	}
	w.depth++
	defer func() { w.depth-- }()
	msg := st.msg
	out := make(map[string]any, len(in))
	parentIn := w.cur
	w.cur = in
	defer func() { w.cur = parentIn }()
	for k, v := range in {
		if k == "resourceType" && st.mem == nil {
			out[k] = v
			continue
		}
		name := k
		isTwin := len(k) > 0 && k[0] == '_'
		if isTwin {
			name = k[1:]
			if _, ok := in[name]; ok {
				continue // walked with its value
			}
		}
		mem := msg.members[name]
		if mem == nil || (isTwin && !mem.prim()) {
			w.push(name, -1)
			w.record(ruleUnknown, MethodRedact) // not FHIR R4: fail closed
			w.pop()
			continue
		}
		var val, twin any
		if isTwin {
			twin = v
		} else {
			val = v
			if mem.prim() {
				twin = in[mem.twin]
			}
		}
		w.push(mem.json, -1)
		w.member(st, mem, val, twin, out, forced)
		w.pop()
	}
	if st.mem == nil {
		w.requireAtRoot(msg, in, out)
		return out
	}
	if msg.typ == "Extension" && !hasValueOrExtension(out) && hasValueOrExtension(in) {
		w.record(ruleInvalid, MethodRedact)
		return nil
	}
	for _, r := range msg.required {
		if present(in, r) && !present(out, r) {
			if msg.kind == kindBackbone {
				w.placeholder(r, in, out)
				continue
			}
			w.record(ruleInvalid, MethodRedact) // e.g. an Annotation without text
			return nil
		}
	}
	if len(out) == 0 || (len(out) == 1 && out["id"] != nil) {
		return nil
	}
	return out
}

func (w *walker) requireAtRoot(msg *message, in, out map[string]any) {
	for _, r := range msg.required {
		if present(in, r) && !present(out, r) {
			w.placeholder(r, in, out)
		}
	}
}

// placeholder puts a data-absent-reason "masked" extension where a required
// element was removed, which keeps the resource valid FHIR.
func (w *walker) placeholder(r *member, in, out map[string]any) {
	name := r.json
	for _, o := range r.options {
		if in[o] != nil || in["_"+o] != nil {
			name = o
		}
	}
	dar := map[string]any{"extension": []any{map[string]any{"url": DataAbsentReasonURL, "valueCode": "masked"}}}
	var v any = dar
	if r.repeated {
		v = []any{dar}
	}
	if r.resource {
		return // a resource cannot hold an extension in its place; jsonformat has no required resource holder
	}
	w.push(name, -1)
	defer w.pop()
	if r.prim() {
		// JSON schemas of FHIR (and the npm fhir validator) want the value
		// of a required primitive, not only its extension: put a value
		// that says nothing where one can be made.
		if pv, method := w.requiredValue(r.msg.typ, in[name]); pv != nil && !r.repeated {
			w.record(ruleRequired, method)
			out[name] = pv
			return
		}
		w.record(ruleRequired, MethodSubstitute)
		out["_"+name] = v
		return
	}
	w.record(ruleRequired, MethodSubstitute)
	out[name] = v
}

// requiredValue is what stands for a required primitive of type typ that
// a rule removed (orig is its input value): the marker for text, an
// opaque urn:uuid for a URI, the (shifted, when the profile shifts dates)
// year for a date, written as the first instant of that year for an
// instant. nil when no neutral value exists (codes, numbers).
func (w *walker) requiredValue(typ string, orig any) (any, string) {
	s, _ := orig.(string)
	switch typ {
	case "string", "markdown":
		return w.e.marker, MethodSubstitute
	case "uri", "url", "canonical":
		return "urn:uuid:" + w.e.uuid("required:"+s), MethodSubstitute
	case "date", "dateTime", "instant":
		if w.e.shifts {
			if ns, _, ok := shiftDate(s, w.shift); ok {
				s = ns
			}
		}
		if len(s) < 4 || !digits(s[:4]) || s[:4] == "0000" {
			return nil, ""
		}
		if typ == "instant" {
			return s[:4] + "-01-01T00:00:00Z", MethodGeneralize
		}
		return s[:4], MethodGeneralize
	}
	return nil, ""
}

func present(m map[string]any, r *member) bool {
	for _, o := range r.options {
		if m[o] != nil {
			return true
		}
		if r.prim() && m["_"+o] != nil {
			return true
		}
	}
	return false
}

func hasValueOrExtension(m map[string]any) bool {
	if m["extension"] != nil {
		return true
	}
	for k := range m {
		if strings.HasPrefix(k, "value") || strings.HasPrefix(k, "_value") {
			return true
		}
	}
	return false
}

// member walks one member (value and, for a primitive, its extension
// holder) and stores what is left in out.
func (w *walker) member(st *state, mem *member, val, twin any, out map[string]any, forced *compiledRule) {
	switch {
	case mem.resource:
		w.resources(mem, val, out)
	case mem.prim():
		w.primitives(st, mem, val, twin, out, forced)
	default:
		w.complexes(st, mem, val, out, forced)
	}
}

func (w *walker) resources(mem *member, val any, out map[string]any) {
	switch x := val.(type) {
	case map[string]any:
		if r := w.resource(x); r != nil {
			out[mem.json] = r
		}
	case []any:
		var items []any
		for i, it := range x {
			m, _ := it.(map[string]any)
			if m == nil {
				continue
			}
			w.path[len(w.path)-1].idx = i
			if r := w.resource(m); r != nil {
				items = append(items, r)
			}
		}
		w.path[len(w.path)-1].idx = -1
		if len(items) > 0 {
			out[mem.json] = items
		}
	}
}

func (w *walker) complexes(st *state, mem *member, val any, out map[string]any, forced *compiledRule) {
	switch x := val.(type) {
	case map[string]any:
		if r := w.complex(st, mem, x, forced); r != nil {
			out[mem.json] = r
		}
	case []any:
		items := make([]any, 0, len(x))
		for i, it := range x {
			m, _ := it.(map[string]any)
			if m == nil {
				continue
			}
			w.path[len(w.path)-1].idx = i
			if r := w.complex(st, mem, m, forced); r != nil {
				items = append(items, r)
			}
		}
		w.path[len(w.path)-1].idx = -1
		if len(items) > 0 {
			out[mem.json] = items
		}
	}
}

func (w *walker) complex(st *state, mem *member, in map[string]any, forced *compiledRule) map[string]any {
	url := ""
	if mem.msg.typ == "Extension" {
		url, _ = in["url"].(string)
	}
	cst := st.child(w.e, mem, url)
	r := forced
	if r == nil {
		r = w.pick(cst)
	}
	if r == nil {
		return w.object(cst, in, nil)
	}
	switch r.Method {
	case MethodVet:
		// On an extension: HL7-published definitions (and the relative
		// sub-extensions of one) are walked, any other is removed whole.
		// On another complex element: its members are examined by the
		// rules.
		if cst.msg.typ == "Extension" && !extensionKept(st, in) {
			w.record(r.ID, MethodVet)
			return nil
		}
		return w.object(cst, in, nil)
	case MethodRedact:
		w.record(r.ID, MethodRedact)
		return nil
	case MethodKeep:
		return deepCopyMap(in)
	case MethodSubstitute:
		if m, ok := r.ReplaceWith.(map[string]any); ok {
			w.record(r.ID, MethodSubstitute)
			return deepCopyMap(m)
		}
		w.record(r.ID, MethodRedact) // a primitive cannot stand for a complex element
		return nil
	case MethodGeneralize:
		switch r.To {
		case "age90", "ageValue":
			switch {
			case cst.typeIs("Quantity"):
				return w.age90(cst, r, in)
			case cst.typeIs("Range"):
				return w.ageRange90(cst, r, in)
			case r.To == "ageValue":
				return w.object(cst, in, nil) // a coded or other value of an age observation
			}
		}
	}
	return w.object(cst, in, r)
}

// pick returns the rule that decides an element: the first rule matching
// its position whose condition (for ageValue and birthValue) holds for
// the element being walked.
func (w *walker) pick(cst *state) *compiledRule {
	for _, r := range cst.rules {
		if !r.conditional() || w.holds(r) {
			return r
		}
	}
	return nil
}

// conditional reports whether a rule applies only where the enclosing
// element says so.
func (r *compiledRule) conditional() bool {
	return r.Method == MethodGeneralize && (r.To == "ageValue" || r.To == "birthValue")
}

// holds reports whether a conditional rule applies to a member of w.cur.
func (w *walker) holds(r *compiledRule) bool {
	switch r.To {
	case "ageValue":
		return hasCode(w.cur["code"], ageCodes)
	case "birthValue":
		return hasCode(w.cur["code"], birthCodes)
	}
	return false
}

// extensionKept reports whether an extension (in, a member of the element
// of state st) survives vet.
func extensionKept(st *state, in map[string]any) bool {
	url, _ := in["url"].(string)
	if hl7Extension(url) {
		return true
	}
	// "ombCategory" in us-core-race: defined by the enclosing extension,
	// which was kept to get here.
	return st.msg != nil && st.msg.typ == "Extension" && url != "" && !strings.ContainsAny(url, ":/ ")
}

// primitives walks a primitive member, single or repeated, with its
// extension holder(s).
func (w *walker) primitives(st *state, mem *member, val, twin any, out map[string]any, forced *compiledRule) {
	cst := st.child(w.e, mem, "")
	r, own := forced, forced == nil
	if own {
		r = w.pick(cst)
	}
	if r != nil && r.Method == MethodGeneralize && r.To == "ageValue" && mem.json == "valueInteger" {
		if n, ok := val.(json.Number); ok && w.ageIntegerOver89(n) {
			// An integer cannot say ">= 90": the value becomes a Quantity.
			w.record(r.ID, MethodGeneralize)
			out["valueQuantity"] = age90Quantity()
			return
		}
	}
	vals, isArr := val.([]any)
	twins, twinArr := twin.([]any)
	if !isArr && !twinArr {
		tw, _ := twin.(map[string]any)
		if val != nil && !isScalar(val) {
			val = nil
		}
		nv, nt := w.primitive(cst, r, own, val, tw)
		if nv != nil {
			out[mem.json] = nv
		}
		if nt != nil {
			out[mem.twin] = nt
		}
		return
	}
	n := max(len(vals), len(twins))
	outVals := make([]any, 0, n)
	outTwins := make([]any, 0, n)
	anyVal, anyTwin := false, false
	for i := 0; i < n; i++ {
		var v any
		var tw map[string]any
		if i < len(vals) && isScalar(vals[i]) {
			v = vals[i]
		}
		if i < len(twins) {
			tw, _ = twins[i].(map[string]any)
		}
		if v == nil && tw == nil {
			continue
		}
		w.path[len(w.path)-1].idx = i
		nv, nt := w.primitive(cst, r, own, v, tw)
		if nv == nil && nt == nil {
			continue
		}
		outVals = append(outVals, nv)
		if nt != nil {
			outTwins = append(outTwins, nt)
			anyTwin = true
		} else {
			outTwins = append(outTwins, nil)
		}
		anyVal = anyVal || nv != nil
	}
	w.path[len(w.path)-1].idx = -1
	if anyVal {
		out[mem.json] = outVals
	}
	if anyTwin {
		out[mem.twin] = outTwins
	}
}

func isScalar(v any) bool {
	switch v.(type) {
	case string, json.Number, bool:
		return true
	}
	return false
}

// primitive applies rule r (nil: none) to one primitive value v (nil when
// only its extension holder is present) and walks the holder tw. own is
// false when r is inherited from an enclosing element.
func (w *walker) primitive(cst *state, r *compiledRule, own bool, v any, tw map[string]any) (any, map[string]any) {
	if r != nil {
		switch r.Method {
		case MethodRedact:
			w.record(r.ID, MethodRedact)
			return nil, nil
		case MethodKeep:
			return v, deepCopyMap(tw)
		}
	}
	nv := v
	if r != nil && v != nil {
		var method string
		var ok bool
		nv, method, ok = w.transform(cst, r, v)
		switch {
		case ok && method != "":
			w.record(r.ID, method)
		case !ok && own:
			// The rule named this element directly but its method does not
			// fit the type: remove the value rather than pass it through.
			w.record(r.ID, MethodRedact)
			return nil, nil
		case !ok:
			nv = v // inherited from an enclosing element: leave other types alone
		}
		if nv == nil {
			return nil, nil
		}
	}
	var nt map[string]any
	if tw != nil {
		var forced *compiledRule
		if !own {
			forced = r
		}
		nt = w.object(cst, tw, forced)
	}
	return nv, nt
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return deepCopyMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopy(v)
	}
	return out
}
