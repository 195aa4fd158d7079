package fhir

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// validateTree gives jsonformat's verdict on a decoded resource without
// building its proto: the same checks, from the same R4 descriptors (see
// validate_plan.go), in the same two phases. Phase 1 is what jsonformat's
// unmarshaller refuses (unknown elements, arrays where one value belongs
// and the reverse, malformed primitives, codes outside a required value
// set, two choice options, nesting deeper than 64); only when it passes
// does phase 2, jsonformat's fhirvalidate, count (required elements, id,
// code, oid and uuid grammars, uri syntax, control characters in strings,
// integer ranges, reference target types). Paths are built the way
// jsonformat builds them and go through the same describeLine, so a client
// sees the same errors. FuzzParseDifferential holds it to jsonformat.
//
// ok is false when the input needs a decision this walker does not make
// from the tree alone; the caller then asks jsonformat. That is:
//   - a base64Binary value in input that has a backslash anywhere:
//     jsonformat decodes the raw JSON text between the quotes, escapes
//     included, which the tree no longer shows;
//   - a Reference with two of its reference options ("reference" and
//     "fragment"): which one survives depends on jsonformat's map order;
//   - a number jsoniter (jsonformat's JSON reader) might refuse: one with
//     an exponent beyond float64, or starting with 0 beyond float32;
//   - a primitive type jsonformat does not support (none in R4 today).
//
// Known divergences, all stricter than jsonformat (never accepting what it
// refuses):
//   - a primitive whose value is given twice ("_birthDate": "1970" next to
//     "birthDate", or "Id" next to "id"): both values are checked, where
//     jsonformat keeps one at random;
//   - where jsonformat's own result depends on its map iteration order (two
//     choice options, names equal up to their first letter, "given" and
//     "_given" of different lengths) the verdict is the same but the list
//     of errors may name other elements.
func validateTree(obj map[string]any, input []byte) (errs ValidationErrors, ok bool) {
	v := validators.Get().(*validator)
	defer v.release()
	v.ps, v.input = plans(), input
	v.resourceAt(obj)
	if !v.oracle && len(v.errs1)+len(v.errs2) > 0 {
		// A refused input may have numbers the walk did not reach.
		v.oracle = hasRiskyNumber(obj)
	}
	if v.oracle {
		return nil, false
	}
	raw := v.errs1
	if len(raw) == 0 {
		raw = v.errs2
	}
	if len(raw) == 0 {
		return nil, true
	}
	out := make(ValidationErrors, 0, len(raw))
	for _, e := range raw {
		out = append(out, describeLine(e.path, e.reason, input))
	}
	sortErrors(out)
	return out, true
}

// sortErrors puts errors in a stable order: jsonformat's depends on Go map
// iteration.
func sortErrors(es ValidationErrors) {
	slices.SortStableFunc(es, func(a, b *ValidationError) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
}

const maxNestingDepth = 64

var depthReason = fmt.Sprintf("field exceeded the maximum nesting depth %d", maxNestingDepth)

type rawError struct{ path, reason string }

// validators keeps the walkers' buffers between calls.
var validators = sync.Pool{New: func() any { return new(validator) }}

func (v *validator) release() {
	clear(v.st[:cap(v.st)]) // drop references into the caller's tree
	*v = validator{path: v.path[:0], st: v.st[:0], errs1: v.errs1[:0], errs2: v.errs2[:0]}
	validators.Put(v)
}

type validator struct {
	ps       *planSet
	input    []byte
	path     []byte // jsonformat's path of the element being read
	depth    int    // dots in path
	errs1    []rawError
	errs2    []rawError
	noPhase2 int  // inside DomainResource.contained, which fhirvalidate never enters
	oracle   bool // ask jsonformat
	st       []fieldState
}

// fieldState is what one object's members did to one field, the way
// jsonformat's proto would remember it.
type fieldState struct {
	fp       *fieldPlan
	key      string     // the member's name, for phase 2 paths
	n        int        // members merged into a single field
	opt      *fieldPlan // a choice field's option
	listLen  int        // a repeated field's length
	vals     []any      // a repeated primitive's values (the member without "_")
	hasValue bool       // a single primitive's value was a string
	bad      bool       // an earlier value of a primitive given twice failed its grammar
	str      string
	e2lo     int // phase 2 errors of the object form of Reference.reference
	e2hi     int
}

func (v *validator) fail1(reason string) {
	v.errs1 = append(v.errs1, rawError{string(v.path), reason})
}

func (v *validator) fail2(reason string) {
	if v.noPhase2 == 0 {
		v.errs2 = append(v.errs2, rawError{string(v.path), reason})
	}
}

// fail2At reports a phase 2 error at path + "." + key (+ "[i]" when i >= 0).
func (v *validator) fail2At(key string, i int, reason string) {
	if v.noPhase2 != 0 {
		return
	}
	n := len(v.path)
	v.path = append(append(v.path, '.'), key...)
	if i >= 0 {
		v.path = append(strconv.AppendInt(append(v.path, '['), int64(i), 10), ']')
	}
	v.fail2(reason)
	v.path = v.path[:n]
}

func (v *validator) state(base int, fp *fieldPlan) int {
	for i := base; i < len(v.st); i++ {
		if v.st[i].fp == fp {
			return i
		}
	}
	v.st = append(v.st, fieldState{fp: fp})
	return len(v.st) - 1
}

// resourceAt is jsonformat's parseContainedResource: obj holds a resource
// named by its resourceType, and v.path is where it sits.
func (v *validator) resourceAt(obj map[string]any) {
	rtv, ok := obj["resourceType"]
	if !ok {
		v.fail1(`missing required field "resourceType"`)
		return
	}
	var rt string
	switch x := rtv.(type) {
	case string:
		rt = x
	case nil:
	default:
		v.fail1("invalid resource type")
		return
	}
	n, d := len(v.path), v.depth
	if n > 0 {
		v.path = append(v.path, '.')
		v.depth++
	}
	v.path = append(v.path, rt...)
	v.depth += strings.Count(rt, ".")
	if mp := v.ps.resources[rt]; mp == nil {
		v.fail1("unknown resource type")
	} else if v.depth > maxNestingDepth {
		v.fail1(depthReason)
	} else {
		v.object(obj, mp, true, nil)
	}
	v.path, v.depth = v.path[:n], d
}

// message is jsonformat's mergeMessage for a member's object value; key
// is the member's name.
func (v *validator) message(obj map[string]any, mp *msgPlan, holder *fieldPlan, key string) {
	switch {
	case mp.contained:
		v.resourceAt(obj)
	case mp.anyMsg && key == "contained":
		v.noPhase2++
		v.resourceAt(obj)
		v.noPhase2--
	default:
		v.object(obj, mp, false, holder)
	}
}

// object reads the members of obj, an element of type mp held by the field
// holder (nil for a resource).
func (v *validator) object(obj map[string]any, mp *msgPlan, resource bool, holder *fieldPlan) {
	base := len(v.st)
	for k, val := range obj {
		if resource && k == "resourceType" {
			continue
		}
		norm := normalizeKey(k)
		fp := mp.fields[norm]
		if fp == nil {
			// jsonformat names the enclosing element, not the member.
			v.fail1("unknown field")
			continue
		}
		n, d := len(v.path), v.depth
		if fp.choice {
			opt := fp.msg.fields[choiceName(k, fp.jsonName)]
			if opt == nil {
				v.fail1("unknown field")
				continue
			}
			ci := v.state(base, fp)
			if prev := v.st[ci].opt; prev != nil && prev.protoName != opt.protoName {
				v.fail1("cannot accept multiple values for " + fp.protoName + " field")
				continue
			}
			v.st[ci].opt = opt
			fp = opt
		}
		v.path = append(append(v.path, '.'), k...)
		v.depth++
		v.field(fp, val, k, base)
		v.path, v.depth = v.path[:n], d
	}
	v.finish(mp, holder, base)
	v.st = v.st[:base]
}

// field is jsonformat's mergeField; v.path already ends in the member.
func (v *validator) field(fp *fieldPlan, val any, key string, base int) {
	if v.depth > maxNestingDepth {
		v.fail1(depthReason)
		return
	}
	if fp.repeated {
		arr, ok := val.([]any)
		if !ok && val != nil {
			v.fail1("expected array")
			return
		}
		si := v.state(base, fp)
		if prev := v.st[si].listLen; prev != 0 && prev != len(arr) {
			v.fail1(fmt.Sprintf("array length mismatch, expected %d, found %d", prev, len(arr)))
			return
		}
		v.st[si].listLen = len(arr)
		if key[0] != '_' {
			v.st[si].vals = arr
			v.st[si].key = key
		} else if v.st[si].key == "" {
			v.st[si].key = key
		}
		n := len(v.path)
		for i, e := range arr {
			v.path = append(strconv.AppendInt(append(v.path, '['), int64(i), 10), ']')
			v.single(fp, e, -1, key)
			v.path = v.path[:n]
		}
		return
	}
	if fp.scalar {
		v.fail1("invalid field")
		return
	}
	si := v.state(base, fp)
	if v.st[si].n > 0 && fp.msg.prim == pkNone {
		v.fail1("invalid extension field")
		return
	}
	v.st[si].n++
	if v.st[si].key == "" || key[0] != '_' {
		v.st[si].key = key
	}
	v.single(fp, val, si, key)
}

// single is jsonformat's mergeSingleField for one value (an array's item
// when si < 0).
func (v *validator) single(fp *fieldPlan, val any, si int, key string) {
	mp := fp.msg
	if mp.prim != pkNone {
		v.primitive(fp, val, si, key)
		return
	}
	obj, ok := val.(map[string]any)
	if !ok && val != nil {
		v.fail1("invalid JSON")
		return
	}
	v.message(obj, mp, fp, key)
}

// primitive is jsonformat's parsePrimitiveType, plus the value checks of
// fhirvalidate that need no other member.
func (v *validator) primitive(fp *fieldPlan, val any, si int, key string) {
	mp := fp.msg
	switch x := val.(type) {
	case map[string]any:
		// The object form: the element's id and extensions.
		lo := len(v.errs2)
		v.object(x, mp, false, fp)
		if si >= 0 && fp.refOneof {
			v.st[si].e2lo, v.st[si].e2hi = lo, len(v.errs2)
		}
		return
	case []any:
		v.fail1("invalid JSON")
		return
	}
	if noun, ok := stringKinds[mp.prim]; ok {
		s, isStr := val.(string)
		if !isStr && val != nil {
			v.fail1("expected " + noun)
			return
		}
		// "" sets nothing in jsonformat's proto.
		if si >= 0 && isStr && s != "" {
			st := &v.st[si]
			if st.hasValue && !st.fp.msg.matches(st.str) {
				// A second value: jsonformat keeps either, we check both.
				st.bad = true
			}
			st.hasValue, st.str = true, s
		}
		if fp.refOneof && fp.jsonName == "reference" {
			return // checked by finish once the reference is normalized
		}
		switch mp.prim {
		case pkString:
			if r := stringProblem(s); r != "" {
				v.fail2(r)
			}
		case pkURI, pkURL, pkCanonical:
			if _, err := url.Parse(s); err != nil {
				v.fail2("invalid " + noun)
			}
		}
		return
	}
	s, isStr := val.(string)
	num, isNum := val.(json.Number)
	if isNum && !jsoniterReadsNumber(string(num)) {
		v.oracle = true
		return
	}
	switch mp.prim {
	case pkBase64:
		switch {
		case !isStr:
			v.fail1("expected binary data")
		case bytes.IndexByte(v.input, '\\') >= 0:
			v.oracle = true
		case !validBase64(s):
			v.fail1("expected binary data")
		}
	case pkBoolean:
		if _, ok := val.(bool); !ok && val != nil {
			v.fail1("expected boolean")
		}
	case pkDate:
		if (!isStr && val != nil) || !validDate(s) {
			v.fail1("expected date")
		}
	case pkDateTime:
		if (!isStr && val != nil) || !validDateTime(s) {
			v.fail1("expected datetime")
		}
	case pkInstant:
		if (!isStr && val != nil) || !validInstant(s) {
			v.fail1("expected instant")
		}
	case pkTime:
		if (!isStr && val != nil) || !validTime(s) {
			v.fail1("invalid time")
		}
	case pkDecimal:
		// The R4 decimal grammar is JSON's number grammar.
		if !isNum {
			v.fail1("expected decimal")
		}
	case pkInteger:
		if val != nil && (!isNum || !validInt32(string(num))) {
			v.fail1("expected integer")
		}
	case pkPositiveInt:
		if !isNum || !digitsOnly(string(num)) || num[0] == '0' {
			v.fail1("expected positive integer")
			return
		}
		n, err := strconv.ParseUint(string(num), 10, 32)
		if err != nil {
			v.fail1("invalid positive integer")
		} else if n > math.MaxInt32 {
			v.fail2("non-negative integer out of range 1..2,147,483,647")
		}
	case pkUnsignedInt:
		if !isNum || !digitsOnly(string(num)) || (num[0] == '0' && len(num) > 1) {
			v.fail1("invalid non-negative integer")
			return
		}
		n, err := strconv.ParseUint(string(num), 10, 32)
		if err != nil || n > math.MaxInt32 {
			// Phase 1 when it overflows uint32, phase 2 otherwise: the
			// same words.
			if err != nil {
				v.fail1("non-negative integer out of range 0..2,147,483,647")
			} else {
				v.fail2("non-negative integer out of range 0..2,147,483,647")
			}
		}
	case pkReferenceID:
		v.fail1("invalid type: ReferenceId")
	case pkEnumCode:
		if !isStr && val != nil {
			v.fail1("expected code")
		} else if !mp.enumAccepts(s) {
			v.fail1("code type mismatch")
		}
	default:
		v.oracle = true
	}
}

// finish runs the phase 2 checks of one element that need all its members:
// required fields, the grammars of id, code, oid and uuid (an element with
// extensions and no value has the value "", which fails them), and a
// Reference's normalization and target type.
func (v *validator) finish(mp *msgPlan, holder *fieldPlan, base int) {
	if v.noPhase2 != 0 || len(v.errs1) > 0 {
		return
	}
	for _, req := range mp.required {
		present := false
		for i := base; i < len(v.st); i++ {
			if s := &v.st[i]; s.fp == req {
				present = s.n > 0 || s.listLen > 0 || s.opt != nil
				break
			}
		}
		if !present {
			v.fail2(fmt.Sprintf("missing required field %q", req.jsonName))
		}
	}
	for i := base; i < len(v.st); i++ {
		s := v.st[i]
		if s.fp.msg == nil {
			continue
		}
		switch kind := s.fp.msg.prim; kind {
		case pkCode, pkID, pkOid, pkUUID:
			if s.fp.repeated {
				for j := 0; j < s.listLen; j++ {
					var str string
					if j < len(s.vals) {
						str, _ = s.vals[j].(string)
					}
					if !s.fp.msg.matches(str) {
						v.fail2At(s.key, j, "invalid "+string(s.fp.msg.desc.Name())+" format")
					}
				}
			} else if s.n > 0 && (s.bad || !s.fp.msg.matches(s.str)) {
				v.fail2At(s.key, -1, "invalid "+string(s.fp.msg.desc.Name())+" format")
			}
		}
	}
	if mp.reference {
		v.finishReference(holder, base)
	}
}

// matches reports whether s is in the grammar of a Code, Id, Oid or Uuid
// (other kinds have none here).
func (p *msgPlan) matches(s string) bool {
	switch p.prim {
	case pkOid, pkUUID:
		return p.regex.MatchString(s)
	case pkCode:
		return validCode(s)
	case pkID:
		return ValidID(s)
	}
	return true
}

// finishReference follows jsonformat's NormalizeReference: "#x" becomes a
// fragment, "<Type>/<id>[/_history/<vid>]" of a known type a typed id
// (whose history must be an id and whose type must be one the field
// allows), anything else stays a string. The string's own id and
// extensions are dropped when it is replaced.
func (v *validator) finishReference(holder *fieldPlan, base int) {
	var uri *fieldState
	options := 0
	for i := base; i < len(v.st); i++ {
		s := &v.st[i]
		if s.fp.refOneof && s.n > 0 {
			options++
			if s.fp.jsonName == "reference" {
				uri = s
			}
		}
	}
	if options > 1 {
		v.oracle = true
		return
	}
	if uri == nil {
		return
	}
	ref, key := uri.str, uri.key
	drop := func() { v.errs2 = append(v.errs2[:uri.e2lo], v.errs2[uri.e2hi:]...) }
	if ref == "" {
		return
	}
	if frag, ok := strings.CutPrefix(ref, "#"); ok {
		drop()
		if r := stringProblem(frag); r != "" {
			v.fail2At("fragment", -1, r)
		}
		return
	}
	parts := strings.Split(ref, "/")
	if len(parts) == 2 || len(parts) == 4 && parts[2] == "_history" {
		if idField, ok := v.ps.refFields[parts[0]]; ok {
			drop()
			if holder != nil && len(holder.validRefs) > 0 && !slices.Contains(holder.validRefs, "Resource") && !slices.Contains(holder.validRefs, parts[0]) {
				v.fail2("invalid reference to a " + parts[0] + " resource, want " + strings.Join(holder.validRefs, ", "))
			}
			if len(parts) == 4 && !ValidID(parts[3]) {
				v.fail2At(idField+".history", -1, "invalid Id format")
			}
			return
		}
	}
	if r := stringProblem(ref); r != "" {
		v.fail2At(key, -1, r)
	}
}

// normalizeKey is jsonformat's field map key for a member name: the first
// letter lowered, after the "_" of a primitive's extension.
func normalizeKey(k string) string {
	if rest, ok := strings.CutPrefix(k, "_"); ok {
		if rest != "" && rest[0] >= 'A' && rest[0] <= 'Z' {
			return "_" + lowerFirst(rest)
		}
		return k
	}
	return lowerFirst(k)
}

// choiceName is jsonformat's name of a choice option in a member name:
// "valueQuantity" is "quantity", "_valueString" is "_string".
func choiceName(k, field string) string {
	if rest, ok := strings.CutPrefix(k, "_"); ok {
		name := strings.TrimPrefix("_"+lowerFirst(rest), "_"+field)
		return "_" + lowerFirst(name)
	}
	return lowerFirst(strings.TrimPrefix(lowerFirst(k), field))
}

// jsoniterReadsNumber reports whether jsoniter, which reads the input for
// jsonformat, surely takes the JSON number s. It skips most numbers
// syntactically but reads those with an exponent as a float64 (then as a
// big.Float) and those starting with 0 as a float32, and refuses the whole
// input ("invalid JSON") when that fails, as for 1e400. Numbers that might
// fail are left to jsonformat.
func jsoniterReadsNumber(s string) bool {
	if s != "" && s[0] == '0' {
		_, err := strconv.ParseFloat(s, 32)
		return err == nil
	}
	if strings.ContainsAny(s, "eE") {
		_, err := strconv.ParseFloat(s, 64)
		return err == nil
	}
	return true
}

func hasRiskyNumber(v any) bool {
	switch x := v.(type) {
	case json.Number:
		return !jsoniterReadsNumber(string(x))
	case map[string]any:
		for _, c := range x {
			if hasRiskyNumber(c) {
				return true
			}
		}
	case []any:
		for _, c := range x {
			if hasRiskyNumber(c) {
				return true
			}
		}
	}
	return false
}

// stringProblem is jsonformat's ValidateString.
func stringProblem(s string) string {
	if len(s) > 1024*1024 {
		return "string exceeds maximum size of 1 MB"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return fmt.Sprintf("string contains invalid characters: %U", c)
		}
	}
	return ""
}

// validCode is the R4 code grammar [^\s]+(\s[^\s]+)*, \s being RE2's
// [\t\n\f\r ].
func validCode(s string) bool {
	if s == "" {
		return false
	}
	prevSpace := true
	for i := 0; i < len(s); i++ {
		sp := isRE2Space(s[i])
		if sp && prevSpace {
			return false
		}
		prevSpace = sp
	}
	return !prevSpace
}

func isRE2Space(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

func digitsOnly(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validInt32 is what jsoniter reads into an int32: a JSON integer (no
// fraction, no exponent) in range.
func validInt32(s string) bool {
	if strings.ContainsAny(s, ".eE") {
		return false
	}
	_, err := strconv.ParseInt(s, 10, 32)
	return err == nil
}

// validBase64 is jsonformat's decodeBase64 on the characters between the
// quotes: base64 in chunks of one stride, separated by runs of spaces of one
// length.
func validBase64(s string) bool {
	if strings.IndexByte(s, ' ') < 0 {
		_, err := base64.StdEncoding.DecodeString(s)
		return err == nil
	}
	var b strings.Builder
	b.Grow(len(s))
	stride, sep, chunkStart := 0, 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			b.WriteByte(s[i])
			continue
		}
		cur := i - chunkStart
		if stride == 0 {
			stride = cur
		}
		if cur != stride {
			return false
		}
		chunkStart = i
		for i < len(s) && s[i] == ' ' {
			i++
		}
		curSep := i - chunkStart
		if sep == 0 {
			sep = curSep
		}
		if curSep != sep {
			return false
		}
		chunkStart = i
		i--
	}
	_, err := base64.StdEncoding.DecodeString(b.String())
	return err == nil
}

// The date and time grammars and layouts of jsonformat (jsonpbhelper).
var (
	dateRE     = regexp.MustCompile(`^-?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1]))?)?$`)
	dateTimeRE = regexp.MustCompile(`^-?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)
	timeRE     = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?$`)
	instantRE  = regexp.MustCompile(`^-?[0-9]{4}-(0[1-9]|1[0-2])-(0[0-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)
)

const (
	layoutYear       = "2006"
	layoutMonth      = "2006-01"
	layoutDay        = "2006-01-02"
	layoutSeconds    = "2006-01-02T15:04:05-07:00"
	layoutSecondsUTC = "2006-01-02T15:04:05Z"
	layoutTime       = "15:04:05"
)

func parses(layout, s string) bool {
	_, err := time.ParseInLocation(layout, s, time.UTC)
	return err == nil
}

func validDate(s string) bool {
	return dateRE.MatchString(s) && (parses(layoutDay, s) || parses(layoutMonth, s) || parses(layoutYear, s))
}

func validDateTime(s string) bool {
	return dateTimeRE.MatchString(s) && (parses(layoutSeconds, s) || parses(layoutSecondsUTC, s) ||
		parses(layoutDay, s) || parses(layoutMonth, s) || parses(layoutYear, s))
}

func validInstant(s string) bool {
	return instantRE.MatchString(s) && (parses(layoutSecondsUTC, s) || parses(layoutSeconds, s))
}

func validTime(s string) bool {
	return timeRE.MatchString(s) && parses(layoutTime, s)
}
