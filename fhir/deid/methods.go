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
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
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
// [-range, -1] ∪ [1, range]. Resources of no patient (patient "") share
// one offset.
func (e *Engine) DateShiftDays(patient string) int {
	sum := e.mac(e.keys.DateShift, patient)
	r := uint64(e.shiftRange)
	n := binary.BigEndian.Uint64(sum[:8]) % (2 * r)
	if n < r {
		return -int(n + 1)
	}
	return int(n - r + 1)
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
//	Patient/123[/_history/2]           -> Patient/<Pseudonym(123)>[/_history/2]
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
	if n >= 4 && parts[n-2] == "_history" && isID(parts[n-1]) {
		hist = "/_history/" + parts[n-1]
		n -= 2
	}
	if n >= 2 && schema().resources[parts[n-2]] != nil && isID(parts[n-1]) {
		if n == 2 || strings.Contains(s, "://") {
			return parts[n-2] + "/" + e.Pseudonym(parts[n-1]) + hist
		}
	}
	return e.Pseudonym(s)
}

func isID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
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

// transform applies a value method to one primitive of type typ. method is
// what to record ("" when the value did not change); ok is false when the
// method does not fit the type. A nil result with ok removes the value.
func (w *walker) transform(r *compiledRule, typ string, v any) (nv any, method string, ok bool) {
	s, isStr := v.(string)
	switch r.Method {
	case MethodDateShift:
		if !isStr || !isDateType(typ) {
			return nil, "", false
		}
		ns, how, ok := shiftDate(s, w.shift)
		return ns, how, ok
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
	case "birthYear":
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

// over89 reports whether a person born on birth (a FHIR date) may be over
// 89 at death (the resource's deceasedDateTime) or at Options.Now. Missing
// month or day count as January and 1, the oldest reading.
func (w *walker) over89(birth string) bool {
	ref := w.opts.Now.UTC()
	if d, _ := w.rootIn["deceasedDateTime"].(string); len(d) >= 4 && digits(d[:4]) {
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
	n, _ := in["value"].(json.Number)
	f, err := strconv.ParseFloat(string(n), 64)
	code, _ := in["code"].(string)
	factor, known := ageUnits[code]
	if code == "" {
		factor, known = 1, true
	}
	if err == nil && (!known || f/factor > 89) {
		m := make(map[string]any, len(in)+3)
		for k, v := range in {
			m[k] = v
		}
		delete(m, "_value")
		m["value"] = json.Number("90")
		m["comparator"] = ">="
		m["unit"] = "years"
		m["system"] = "http://unitsofmeasure.org"
		m["code"] = "a"
		w.record(r.ID, MethodGeneralize)
		in = m
	}
	return w.object(cst, in, nil)
}

// cleanPattern finds identifiers in free text: e-mail addresses, URLs,
// dates, SSN-like and phone-like numbers, and any run of 5 or more digits.
var cleanPattern = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}` +
	`|(?i:https?://|www\.)[^\s]+` +
	`|\d{4}-\d{1,2}-\d{1,2}(?:T[0-9:.+\-Z]*)?|\d{1,2}/\d{1,2}/\d{2,4}` +
	`|\d{3}-\d{2}-\d{4}` +
	`|(?:\+?1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}` +
	`|\d{5,}`)

// clean replaces identifiers in free text by the marker: what cleanPattern
// finds and every name, address, telecom, identifier or reference display
// string found elsewhere in the same resource.
func (w *walker) clean(s string) string {
	if !w.termsDone {
		w.terms = collectTerms(w.rootIn)
		w.termsDone = true
	}
	var spans [][2]int
	if strings.ContainsAny(s, "0123456789@") || strings.Contains(s, "://") || strings.Contains(strings.ToLower(s), "www.") {
		for _, m := range cleanPattern.FindAllStringIndex(s, -1) {
			spans = append(spans, [2]int{m[0], m[1]})
		}
	}
	if len(w.terms) > 0 {
		hay := s
		ascii := isASCII(s)
		if ascii {
			hay = strings.ToLower(s)
		}
		for _, t := range w.terms {
			needle := t
			if ascii {
				needle = strings.ToLower(t)
			}
			for off := 0; ; {
				i := strings.Index(hay[off:], needle)
				if i < 0 {
					break
				}
				i += off
				j := i + len(needle)
				// Whole words only: a given name "Jo" is not in "Joint".
				if (i == 0 || !alnum(hay[i-1]) || !alnum(needle[0])) && (j == len(hay) || !alnum(hay[j]) || !alnum(needle[len(needle)-1])) {
					spans = append(spans, [2]int{i, j})
				}
				off = i + 1
			}
		}
	}
	if len(spans) == 0 {
		return s
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		if sp[1] <= last {
			continue
		}
		if sp[0] < last {
			sp[0] = last
		}
		b.WriteString(s[last:sp[0]])
		b.WriteString(w.e.marker)
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= utf8.RuneSelf
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// identifyingTypes are the data types whose strings clean removes from free
// text.
var identifyingTypes = map[string]bool{"HumanName": true, "Address": true, "ContactPoint": true, "Identifier": true}

// collectTerms gathers the identifying strings of a resource (contained
// resources included), longest first.
func collectTerms(root map[string]any) []string {
	set := map[string]bool{}
	typ, _ := root["resourceType"].(string)
	if m := schema().resources[typ]; m != nil {
		collect(m, root, false, set)
	}
	terms := make([]string, 0, len(set))
	for t := range set {
		terms = append(terms, t)
	}
	sort.Slice(terms, func(i, j int) bool {
		if len(terms[i]) != len(terms[j]) {
			return len(terms[i]) > len(terms[j])
		}
		return terms[i] < terms[j]
	})
	return terms
}

func collect(msg *message, node map[string]any, inID bool, set map[string]bool) {
	for k, v := range node {
		mem := msg.members[k]
		if mem == nil {
			continue
		}
		if mem.resource {
			forEachObject(v, func(o map[string]any) {
				typ, _ := o["resourceType"].(string)
				if m := schema().resources[typ]; m != nil {
					collect(m, o, false, set)
				}
			})
			continue
		}
		if mem.msg.kind == kindPrimitive {
			take := inID && mem.msg.typ == "string" && !(msg.typ == "Address" && (k == "state" || k == "country"))
			take = take || (msg.typ == "Reference" && k == "display")
			if !take {
				continue
			}
			forEachString(v, func(s string) {
				if len(strings.TrimSpace(s)) >= 2 {
					set[s] = true
				}
			})
			continue
		}
		id := inID || identifyingTypes[mem.msg.typ]
		forEachObject(v, func(o map[string]any) { collect(mem.msg, o, id, set) })
	}
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
