package deid

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fhiranchor/fhiranchor/fhir"
)

// Pseudonym returns the cryptoHash of a logical id: hex HMAC-SHA256 under
// the CryptoHash key, 64 characters, itself a valid FHIR id. The
// de-identified form of the reference "Patient/<id>" is
// "Patient/"+Pseudonym(id), and a Patient's own id becomes Pseudonym(id).
func (e *Engine) Pseudonym(id string) string {
	sum := e.mac(e.keys.CryptoHash, id)
	return hex.EncodeToString(sum[:])
}

// DateShiftDays returns the number of days the dates of a patient's
// resources move: HMAC(DateShift key, patient) mapped onto
// [-range, -min] ∪ [min, range] (dateShiftRange, dateShiftMin). Resources
// of no patient (patient "") share one offset.
func (e *Engine) DateShiftDays(patient string) int {
	sum := e.mac(e.keys.DateShift, patient)
	span := uint64(e.shiftRange - e.shiftMin + 1)
	n := binary.BigEndian.Uint64(sum[:8]) % (2 * span)
	if n < span {
		return -(e.shiftMin + int(n))
	}
	return e.shiftMin + int(n-span)
}

var macPools sync.Map // key string -> *sync.Pool of hash.Hash

func (e *Engine) mac(key []byte, s string) [32]byte {
	p, ok := macPools.Load(string(key))
	if !ok {
		k := slices.Clone(key)
		p, _ = macPools.LoadOrStore(string(key), &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }})
	}
	pool := p.(*sync.Pool)
	h := pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(s))
	var sum [32]byte
	h.Sum(sum[:0])
	pool.Put(h)
	return sum
}

// hashRef is cryptoHash for strings that may be references or URIs: only
// the id part of a reference is hashed, so references stay linkable.
//
//	Patient/123[/_history/2]           -> Patient/<Pseudonym(123)>  (the version is dropped)
//	https://host/fhir/Patient/123      -> Patient/<Pseudonym(123)>  (the base URL is dropped)
//	#contained-id                      -> #<Pseudonym(contained-id)>
//	urn:uuid:<uuid>                    -> urn:uuid:<UUID made of HMAC(uuid)>
//	urn:oid:<oid>                      -> urn:oid:2.25.<128 bits of HMAC(oid)>
//	Patient (a bare type)              -> Patient
//	anything else                      -> Pseudonym(value)
func (e *Engine) hashRef(s string) string {
	switch {
	case s == "#":
		return s
	case strings.HasPrefix(s, "#"):
		return "#" + e.Pseudonym(s[1:])
	case strings.HasPrefix(s, "urn:uuid:"):
		return "urn:uuid:" + e.uuid(s[len("urn:uuid:"):])
	case strings.HasPrefix(s, "urn:oid:"):
		return "urn:oid:" + e.oid(s[len("urn:oid:"):])
	}
	if schema().resources[s] != nil {
		return s
	}
	parts := strings.Split(s, "/")
	n := len(parts)
	hist := ""
	if n >= 4 && parts[n-2] == "_history" && fhir.ValidID(parts[n-1]) {
		// A versioned reference keeps its target, not its version: the
		// npm fhir validator rejects "Type/id/_history/n", and research
		// copies link resources, not versions.
		n -= 2
	}
	if n >= 2 && schema().resources[parts[n-2]] != nil && fhir.ValidID(parts[n-1]) {
		if n == 2 || strings.Contains(s, "://") {
			return parts[n-2] + "/" + e.Pseudonym(parts[n-1]) + hist
		}
	}
	return e.Pseudonym(s)
}

// uuid derives an RFC 9562 version-8 UUID from the HMAC of s.
func (e *Engine) uuid(s string) string {
	sum := e.mac(e.keys.CryptoHash, s)
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// oid derives an OID under the UUID arc 2.25 from the HMAC of s.
func (e *Engine) oid(s string) string {
	sum := e.mac(e.keys.CryptoHash, s)
	return "2.25." + new(big.Int).SetBytes(sum[:16]).String()
}

// cryptoHash hashes a primitive of FHIR type typ so the result is still a
// valid value of that type.
func (e *Engine) cryptoHash(typ, s string) (string, bool) {
	switch typ {
	case "id":
		return e.Pseudonym(s), true
	case "oid":
		return "urn:oid:" + e.oid(strings.TrimPrefix(s, "urn:oid:")), true
	case "uuid":
		return "urn:uuid:" + e.uuid(strings.TrimPrefix(s, "urn:uuid:")), true
	case "string", "uri", "url", "canonical", "code", "markdown", "base64Binary":
		return e.hashRef(s), true
	}
	return "", false
}

// encrypt seals s with AES-256-GCM under a random nonce: base64(nonce ||
// ciphertext).
func (e *Engine) encrypt(s string) (string, bool) {
	if e.aead == nil {
		return "", false
	}
	nonce := make([]byte, e.aead.NonceSize(), e.aead.NonceSize()+len(s)+e.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", false
	}
	return base64.StdEncoding.EncodeToString(e.aead.Seal(nonce, nonce, []byte(s), nil)), true
}

// ErrDecrypt reports a value that is not an encrypt output under the key.
var ErrDecrypt = errors.New("decrypt: not a value encrypted under this key")

// Decrypt reverses the encrypt method: key is the 32-byte Encrypt key.
func Decrypt(key []byte, value string) (string, error) {
	if len(key) != 32 {
		return "", errors.New("decrypt: key must be 32 bytes")
	}
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	b, err := base64.StdEncoding.DecodeString(value)
	if err != nil || len(b) < aead.NonceSize() {
		return "", ErrDecrypt
	}
	pt, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], nil)
	if err != nil {
		return "", ErrDecrypt
	}
	return string(pt), nil
}

// transform applies a value method to one primitive (of the type of cst).
// method is what to record ("" when the value did not change); ok is false
// when the method does not fit the type. A nil result with ok removes the
// value.
func (w *walker) transform(cst *state, r *compiledRule, v any) (nv any, method string, ok bool) {
	typ := cst.msg.typ
	s, isStr := v.(string)
	switch r.Method {
	case MethodDateShift:
		if !isStr || !isDateType(typ) {
			return nil, "", false
		}
		ns, how, ok := shiftDate(s, w.shift)
		if ok && w.old {
			// The patient is over 89: with an age and the date of an event
			// a date finer than the year tells their age, so every date
			// keeps only its (shifted) year.
			return yearOf(typ, ns)
		}
		return ns, how, ok
	case MethodVet:
		if !isStr {
			return nil, "", false
		}
		if w.vet(cst, typ, s) {
			return s, "", true
		}
		return nil, MethodVet, true
	case MethodCryptoHash:
		if !isStr {
			return nil, "", false
		}
		ns, ok := w.e.cryptoHash(typ, s)
		return ns, MethodCryptoHash, ok
	case MethodEncrypt:
		if !isStr || (typ != "string" && typ != "markdown" && typ != "base64Binary") {
			return nil, "", false
		}
		ns, ok := w.e.encrypt(s)
		return ns, MethodEncrypt, ok
	case MethodSubstitute:
		switch r.ReplaceWith.(type) {
		case map[string]any, []any:
			return nil, "", false
		}
		return r.ReplaceWith, MethodSubstitute, true
	case MethodPerturb:
		n, isNum := v.(json.Number)
		if !isNum {
			return nil, "", false
		}
		return perturb(r, typ, n)
	case MethodGeneralize:
		return w.generalize(r, typ, v)
	case MethodClean:
		if !isStr || (typ != "string" && typ != "markdown") {
			return nil, "", false
		}
		if len(s) > maxCleanLen {
			return nil, MethodRedact, true // too long to scrub cheaply: fail closed
		}
		ns := w.clean(s)
		if ns == s {
			return s, "", true
		}
		return ns, MethodClean, true
	}
	return nil, "", false
}

func isDateType(typ string) bool { return typ == "date" || typ == "dateTime" || typ == "instant" }

// shiftDate moves a FHIR date, dateTime or instant by days, keeping what
// follows the date (time and zone) as written. A year alone is kept (Safe
// Harbor allows years); a year and month cannot move by days and is
// generalized to the year.
func shiftDate(s string, days int) (string, string, bool) {
	switch {
	case len(s) == 4 && digits(s):
		return s, "", true
	case len(s) == 7 && s[4] == '-' && digits(s[:4]) && digits(s[5:]):
		return s[:4], MethodGeneralize, true
	case len(s) >= 10 && s[4] == '-' && s[7] == '-' && digits(s[:4]) && digits(s[5:7]) && digits(s[8:10]):
		y, _ := strconv.Atoi(s[:4])
		m, _ := strconv.Atoi(s[5:7])
		d, _ := strconv.Atoi(s[8:10])
		t := time.Date(y, time.Month(m), d, 12, 0, 0, 0, time.UTC)
		if t.Year() != y || int(t.Month()) != m || t.Day() != d {
			return "", "", false
		}
		t = t.AddDate(0, 0, days)
		if t.Year() < 1 || t.Year() > 9999 {
			return "", "", false
		}
		return t.Format("2006-01-02") + s[10:], MethodDateShift, true
	}
	return "", "", false
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func perturb(r *compiledRule, typ string, n json.Number) (any, string, bool) {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, "", false
	}
	span := r.Span
	if r.RangeType == "proportional" {
		span *= math.Abs(f)
	}
	// Noise is random per call (math/rand/v2, seeded by the runtime): the
	// same value perturbs differently each time it is de-identified.
	g := f + (mrand.Float64()*2-1)*span
	switch typ {
	case "integer", "positiveInt", "unsignedInt", "integer64":
		g = math.Round(g)
		if typ == "positiveInt" && g < 1 {
			g = 1
		}
		if typ == "unsignedInt" && g < 0 {
			g = 0
		}
		if typ != "integer64" {
			g = math.Max(math.Min(g, math.MaxInt32), math.MinInt32)
		}
		return json.Number(strconv.FormatFloat(g, 'f', 0, 64)), MethodPerturb, true
	case "decimal":
		places := 0
		if i := strings.IndexByte(string(n), '.'); i >= 0 {
			places = len(n) - i - 1
			if j := strings.IndexAny(string(n), "eE"); j > i {
				places = j - i - 1
			}
		}
		if r.RoundTo != nil {
			places = *r.RoundTo
		}
		return json.Number(strconv.FormatFloat(g, 'f', places, 64)), MethodPerturb, true
	}
	return nil, "", false
}

func (w *walker) generalize(r *compiledRule, typ string, v any) (any, string, bool) {
	s, isStr := v.(string)
	switch r.To {
	case "year":
		if !isStr || (typ != "date" && typ != "dateTime") || len(s) < 4 || !digits(s[:4]) {
			return nil, "", false
		}
		if len(s) == 4 {
			return s, "", true
		}
		return s[:4], MethodGeneralize, true
	case "zip3":
		if !isStr || typ != "string" {
			return nil, "", false
		}
		z := strings.TrimSpace(s)
		if len(z) > 3 {
			z = z[:3]
		}
		if len(z) < 3 || w.e.restricted[z] || !utf8.ValidString(z) {
			z = "000"
		}
		if z == s {
			return s, "", true
		}
		return z, MethodGeneralize, true
	case "age90":
		n, isNum := v.(json.Number)
		if !isNum {
			return nil, "", false
		}
		if f, err := strconv.ParseFloat(string(n), 64); err == nil && f > 89 {
			return json.Number("90"), MethodGeneralize, true
		}
		return n, "", true
	case "state":
		if !isStr || typ != "string" {
			return nil, "", false
		}
		for _, k := range []string{"city", "district"} {
			if c, _ := w.cur[k].(string); c != "" && strings.EqualFold(strings.TrimSpace(c), strings.TrimSpace(s)) {
				return nil, MethodGeneralize, true // a city-state: the state names the city
			}
		}
		return s, "", true
	case "ageValue":
		// An integer over 89 became a Quantity in the walker; what is left
		// is a number up to 89. Other primitives (a string, a date) of an
		// age observation do not fit and are removed.
		if n, isNum := v.(json.Number); isNum && typ == "integer" {
			return n, "", true
		}
		return nil, "", false
	case "birthYear", "birthValue":
		if !isStr || (typ != "date" && typ != "dateTime") || len(s) < 4 || !digits(s[:4]) {
			return nil, "", false
		}
		if w.over89(s) {
			w.ageBand = true
			return nil, MethodGeneralize, true
		}
		if len(s) == 4 {
			return s, "", true
		}
		return s[:4], MethodGeneralize, true
	}
	return nil, "", false
}

// over89 reports whether the person a birth date of the resource being
// walked belongs to may be over 89: born on birth (a FHIR date), at death
// (the resource's deceasedDateTime or deceasedDate) or at Options.Now. A
// patient known to be over 89 (Options.Subject) is, on their Patient; a
// relative (FamilyMemberHistory) is when their age or age at death says
// so.
func (w *walker) over89(birth string) bool {
	typ, _ := w.rootIn["resourceType"].(string)
	if w.old && typ == "Patient" {
		return true
	}
	if typ == "FamilyMemberHistory" && w.relativeOver89() {
		return true
	}
	return w.over89At(birth, w.opts.Now, deceasedOf(w.rootIn))
}

// deceasedOf returns a resource's date of death, or "".
func deceasedOf(tree map[string]any) string {
	for _, k := range []string{"deceasedDateTime", "deceasedDate"} {
		if d, _ := tree[k].(string); d != "" {
			return d
		}
	}
	return ""
}

// over89At reports whether a person born on birth may be over 89 at death
// (deceased, a FHIR date or dateTime, or "") or else at now. Missing month
// or day count as January and 1, the oldest reading.
func (w *walker) over89At(birth string, now time.Time, deceased string) bool {
	if len(birth) < 4 || !digits(birth[:4]) {
		return false
	}
	ref := now.UTC()
	if d := deceased; len(d) >= 4 && digits(d[:4]) {
		y, _ := strconv.Atoi(d[:4])
		m, day := 12, 31
		if len(d) >= 7 && digits(d[5:7]) {
			m, _ = strconv.Atoi(d[5:7])
		}
		if len(d) >= 10 && digits(d[8:10]) {
			day, _ = strconv.Atoi(d[8:10])
		}
		ref = time.Date(y, time.Month(m), day, 0, 0, 0, 0, time.UTC)
	}
	y, _ := strconv.Atoi(birth[:4])
	m, d := 1, 1
	if len(birth) >= 7 && digits(birth[5:7]) {
		m, _ = strconv.Atoi(birth[5:7])
	}
	if len(birth) >= 10 && digits(birth[8:10]) {
		d, _ = strconv.Atoi(birth[8:10])
	}
	age := ref.Year() - y
	if int(ref.Month()) < m || (int(ref.Month()) == m && ref.Day() < d) {
		age--
	}
	return age > 89
}

// ageUnits converts UCUM age units to years.
var ageUnits = map[string]float64{"a": 1, "mo": 12, "wk": 365.25 / 7, "d": 365.25, "h": 365.25 * 24, "min": 365.25 * 24 * 60}

// age90 generalizes an Age (or other Quantity) over 89 years to ">= 90
// years", then walks what is left with the ordinary rules.
func (w *walker) age90(cst *state, r *compiledRule, in map[string]any) map[string]any {
	if y, ok := quantityYears(in); ok && y > 89 {
		m := make(map[string]any, len(in)+3)
		for k, v := range in {
			m[k] = v
		}
		delete(m, "_value")
		delete(m, "_unit")
		delete(m, "_code")
		delete(m, "_system")
		for k, v := range age90Quantity() {
			m[k] = v
		}
		w.record(r.ID, MethodGeneralize)
		in = m
	}
	return w.object(cst, in, nil)
}

// maxCleanLen bounds the free text clean and vet scrub; longer text is
// removed.
const maxCleanLen = 64 << 10

// clean replaces identifiers in free text by the marker: what scrubPattern
// finds, and every identifying string of the same resource (its Lexicon
// and every reference display) and of Options.Subject.Known.
func (w *walker) clean(s string) string { return w.scrub(s) }

// scrub is the scrubber of clean and vet.
func (w *walker) scrub(s string) string {
	if w.terms == nil {
		set := map[string]bool{}
		typ, _ := w.rootIn["resourceType"].(string)
		if m := schema().resources[typ]; m != nil {
			lexicon(m, w.rootIn, set, true)
		}
		own := make([]string, 0, len(set))
		for t := range set {
			own = append(own, t)
		}
		w.terms = newMatcher(own)
	}
	if w.known == nil {
		if w.known = w.opts.Subject.known; w.known == nil {
			w.known = newMatcher(w.opts.Subject.Known)
		}
	}
	return scrub(s, w.e.marker, w.terms, w.known)
}

// vet reports whether a text primitive (of type typ, at state cst, a
// member of w.cur) is provably not identifying, and is kept:
//
//   - Coding.display: a standard terminology, a well-formed code, and
//     nothing the scrubber would remove;
//   - Coding.version: a standard terminology and a version without spaces;
//   - CodeableConcept.text: it repeats a kept display of its codings;
//   - Quantity.unit: the UCUM code itself, or a unit of time;
//   - Reference.type: a resource type or an HL7 canonical;
//   - other uri, url and canonical values: HL7-published definitions
//     (http://hl7.org/fhir/..., http://terminology.hl7.org/...).
//
// Anything else is removed.
func (w *walker) vet(cst *state, typ, s string) bool {
	var parent *message
	if cst.parent != nil {
		parent = cst.parent.msg
	}
	if parent == nil || cst.mem == nil || len(s) > maxCleanLen {
		return false
	}
	name := cst.mem.name
	switch {
	case parent.typ == "Coding" && name == "display":
		return w.displayKept(w.cur)
	case parent.typ == "Coding" && name == "version":
		system, _ := w.cur["system"].(string)
		code, _ := w.cur["code"].(string)
		return standardCode(system, code) && codeToken(s) && w.scrub(s) == s
	case parent.typ == "CodeableConcept" && name == "text":
		return w.textKept(w.cur, s)
	case (parent.typ == "Quantity" || parent.base == "Quantity") && name == "unit":
		return w.unitKept(w.cur, s)
	case parent.typ == "Reference" && name == "type":
		return schema().resources[s] != nil || hl7Canonical(s)
	case typ == "uri" || typ == "url" || typ == "canonical":
		return hl7Canonical(s)
	}
	return false
}

// yearOf cuts a (shifted) date to its year; an instant cannot be a year
// and is removed (a required one is then filled with its year by the
// walker).
func yearOf(typ, s string) (any, string, bool) {
	if len(s) < 4 || !digits(s[:4]) {
		return nil, "", false
	}
	if typ == "instant" {
		return nil, MethodGeneralize, true
	}
	if len(s) == 4 {
		return s, "", true
	}
	return s[:4], MethodGeneralize, true
}

func forEachObject(v any, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x)
	case []any:
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				fn(m)
			}
		}
	}
}

func forEachString(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				fn(s)
			}
		}
	}
}
