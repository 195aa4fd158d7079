package fhir

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	r4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Resource is a validated FHIR resource as a JSON tree.
type Resource struct {
	Type string
	Tree map[string]any

	invalid map[int]ValidationErrors // batch entries dropped by ParseBundle
}

// Parser validates FHIR R4 JSON. It is safe for concurrent use.
type Parser struct {
	um *jsonformat.Unmarshaller
}

// NewParser returns a Parser that applies jsonformat's full R4 validation
// (required elements, reference target types, primitive formats): Parse
// through validateTree, which reproduces it from the same descriptors, and
// ParseJSONFormat through jsonformat itself.
func NewParser() (*Parser, error) {
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("create FHIR R4 unmarshaller: %w", err)
	}
	// Deeply nested input is an attack, not a resource: cap the recursion.
	um.MaxNestingDepth = maxNestingDepth
	plans() // built once, here rather than in the first request
	return &Parser{um: um}, nil
}

// Parse validates data as one FHIR R4 resource (a Bundle included) and
// returns its tree. A failure is a ValidationErrors whose paths point at the
// failing elements; it never quotes a value of the input.
func (p *Parser) Parse(data []byte) (*Resource, error) {
	return p.parse(data, false)
}

// ParseJSONFormat is Parse with jsonformat's unmarshaller and validation
// deciding what is valid, as Parse did before validateTree replaced them:
// the oracle of the differential tests and the "bare jsonformat parse"
// baseline of the ingest benchmarks. It costs several times Parse.
func (p *Parser) ParseJSONFormat(data []byte) (*Resource, error) { return p.parse(data, true) }

// parse is Parse; with oracle it asks jsonformat itself, which Parse does only
// for the few inputs validateTree leaves to it.
func (p *Parser) parse(data []byte, oracle bool) (*Resource, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, ValidationErrors{{Reason: "empty body", Err: ErrInvalidJSON}}
	}
	// The tree we keep first: it is what is validated, and Decode refuses
	// what jsonformat's reader might read differently (repeated names, bad
	// UTF-8).
	v, err := Decode(data)
	if err != nil {
		return nil, ValidationErrors{{Reason: err.Error(), Err: ErrInvalidJSON}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, ValidationErrors{{Reason: "a resource must be a JSON object", Err: ErrInvalid}}
	}
	if oracle {
		if errs := p.validateJSONFormat(data); len(errs) > 0 {
			return nil, errs
		}
	} else if errs, ok := validateTree(obj, data); !ok {
		if errs := p.validateJSONFormat(data); len(errs) > 0 {
			return nil, errs
		}
	} else if len(errs) > 0 {
		return nil, errs
	}
	typ, _ := obj["resourceType"].(string)
	if errs := checkTree(obj, typ); len(errs) > 0 {
		return nil, errs
	}
	if errs := checkValues(obj, typ); len(errs) > 0 {
		return nil, errs
	}
	return &Resource{Type: typ, Tree: obj}, nil
}

// validateJSONFormat runs jsonformat's unmarshaller and validation on data
// and describes what they refuse.
func (p *Parser) validateJSONFormat(data []byte) ValidationErrors {
	var rep reporter
	if _, err := p.um.UnmarshalWithErrorReporter(data, &rep); err != nil {
		es := describe(err, data)
		sortErrors(es)
		return es
	}
	if len(rep.errs) > 0 {
		es := describeAll(rep.errs, data)
		sortErrors(es)
		return es
	}
	return nil
}

// checkTree enforces the FHIR JSON rules that jsonformat is lenient about
// and that would let the tree we store say something other than what was
// validated:
//   - names are case-sensitive: jsonformat also takes "Subject" for
//     "subject" (and both at once), which code reading "subject" never sees;
//   - null is no value: jsonformat reads "active": null as false and
//     "code": null as a present required element;
//   - no empty objects or arrays (FHIR ele-1): "code": {} would satisfy a
//     required element too;
//   - null in an array only where the sibling primitive-extension array
//     ("given" and "_given") has that item.
//
// Member names reaching it were all matched against the R4 schema by
// jsonformat, so paths may name them; values never appear.
func checkTree(obj map[string]any, path string) ValidationErrors {
	// The first pass only looks, so valid input costs no paths.
	if c := (treeChecker{}); !c.walk(obj, "") {
		return nil
	}
	c := treeChecker{paths: true}
	c.walk(obj, path)
	// Map order is random; the client gets its errors in a stable order.
	slices.SortStableFunc(c.errs, func(a, b *ValidationError) int { return strings.Compare(a.Path, b.Path) })
	return c.errs
}

type treeChecker struct {
	paths bool // build paths and collect errors
	errs  ValidationErrors
}

// walk reports whether v breaks a rule of checkTree.
func (c *treeChecker) walk(v any, p string) (bad bool) {
	add := func(path func() string, reason string) {
		bad = true
		if c.paths {
			c.errs = append(c.errs, &ValidationError{Path: path(), Reason: reason, Err: ErrInvalid})
		}
	}
	x, ok := v.(map[string]any)
	if !ok {
		return false
	}
	if len(x) == 0 {
		add(func() string { return p }, "empty element")
		return true
	}
	for k, val := range x {
		name := strings.TrimPrefix(k, "_")
		var kp string
		if c.paths {
			kp = p + "." + lowerFirst(name)
		}
		path := func() string { return kp }
		if name != lowerFirst(name) {
			add(path, "element names are case-sensitive")
			continue
		}
		switch e := val.(type) {
		case nil:
			add(path, "null is not a value")
		case map[string]any:
			bad = c.walk(e, kp) || bad
		case []any:
			if len(e) == 0 {
				add(path, "empty array")
				continue
			}
			twin, _ := x[twinName(k)].([]any)
			for i, item := range e {
				ip := func() string { return kp + "[" + strconv.Itoa(i) + "]" }
				if item == nil {
					if i >= len(twin) || twin[i] == nil {
						add(ip, "null item without a value or extension at the same index")
					}
					continue
				}
				if _, ok := item.(map[string]any); ok {
					var itemPath string
					if c.paths {
						itemPath = ip()
					}
					bad = c.walk(item, itemPath) || bad
				}
			}
		}
	}
	return bad
}

// twinName pairs a primitive array's name with its extension array's.
func twinName(k string) string {
	if name, ok := strings.CutPrefix(k, "_"); ok {
		return name
	}
	return "_" + k
}

func lowerFirst(s string) string {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
}

// reporter collects jsonformat's validation errors; warnings are not
// failures.
type reporter struct {
	errs []reportedError
}

type reportedError struct {
	path string
	err  error
}

func (r *reporter) ReportValidationError(path string, err error) error {
	r.errs = append(r.errs, reportedError{path, err})
	return nil
}

func (r *reporter) ReportValidationWarning(string, error) error { return nil }

// errorAt matches one line of a jsonformat error: `error at <path>: <details>`,
// the path Go-quoted (%q).
var errorAt = regexp.MustCompile(`^error at ("(?:[^"\\]|\\.)*"): (.*)$`)

// describe turns a jsonformat parse error into ValidationErrors. jsonformat
// formats each as `error at "<path>": <details>` where details are fixed
// phrases by its own contract; scrub still removes any quoted value of the
// input, in case a future version quotes one.
func describe(err error, input []byte) ValidationErrors {
	var out ValidationErrors
	for _, line := range strings.Split(err.Error(), "\n") {
		out = append(out, describeLine("", line, input))
	}
	return out
}

func describeAll(errs []reportedError, input []byte) ValidationErrors {
	out := make(ValidationErrors, 0, len(errs))
	for _, e := range errs {
		out = append(out, describeLine(e.path, e.err.Error(), input))
	}
	return out
}

func describeLine(path, msg string, input []byte) *ValidationError {
	reason := msg
	if m := errorAt.FindStringSubmatch(msg); m != nil {
		if path == "" {
			path, _ = strconv.Unquote(m[1])
		}
		reason = m[2]
	}
	// normalizePath also cuts an unknown resource type's name, which is
	// input, from the path.
	ve := &ValidationError{Path: normalizePath(path), Reason: scrub(reason, input), Err: ErrInvalid}
	switch {
	case reason == "invalid JSON" && ve.Path != "":
		// Decode accepted the whole input, so this is a value of another
		// JSON type where an object belongs.
		ve.Reason = "expected an object"
	case reason == "invalid JSON":
		ve.Err = ErrInvalidJSON
	case reason == "unknown field":
		// jsonformat names only the enclosing element, and so do we: the
		// member's name is the client's choice (a surname, an MRN) and is
		// never echoed.
		ve.Reason = "unknown element"
	case strings.Contains(reason, "unknown resource type"):
		ve.Err = ErrUnknownResource
		ve.Reason = "unknown resource type"
		if ve.Path != "" && !strings.HasSuffix(ve.Path, ".resourceType") {
			// A nested type spelled like a validation path segment
			// ("patient") was taken for the holder's type.
			ve.Path += ".resourceType"
		}
	}
	return ve
}

var quoted = regexp.MustCompile(`"([^"]*)"`)

// scrub replaces any quoted string in reason that occurs in the input as a
// JSON string value (not as a member name) by "(value)".
func scrub(reason string, input []byte) string {
	return quoted.ReplaceAllStringFunc(reason, func(q string) string {
		for rest := input; ; {
			i := bytes.Index(rest, []byte(q))
			if i < 0 {
				return q
			}
			after := bytes.TrimLeft(rest[i+len(q):], " \t\r\n")
			if len(after) == 0 || after[0] != ':' {
				return `"(value)"`
			}
			rest = rest[i+len(q):]
		}
	})
}

// normalizePath rewrites a jsonformat element path into the FHIRPath-like
// form clients expect, following the R4 schema segment by segment:
//   - the resource-type segment jsonformat inserts where a resource is
//     nested (Bundle.entry.resource, contained, Parameters.parameter.resource;
//     "Patient" when parsing, "patient" when validating) is dropped;
//   - a choice element, "value.string" when validating, becomes
//     "valueString";
//   - names take their schema spelling: "_given" (the primitive's
//     extension) is "given", "BirthDate" is "birthDate".
//
// An unknown resource type ends the path at the element that holds it
// ("Bundle.entry[0].resource.resourceType"), or makes it "" at the top: the
// type name is input, and may itself contain dots. Segments the schema does
// not know are kept, in camelCase.
func normalizePath(p string) string {
	if p == "" {
		return ""
	}
	segs := strings.Split(p, ".")
	md, ok := resourceTypes().desc[fold(segs[0])]
	if !ok || string(md.Name()) != segs[0] {
		return ""
	}
	out := []string{string(md.Name())}
	for _, seg := range segs[1:] {
		name, idx := seg, ""
		if i := strings.IndexByte(seg, '['); i >= 0 {
			name, idx = seg[:i], seg[i:]
		}
		name = lowerFirst(camel(strings.TrimPrefix(name, "_")))
		switch {
		case md == nil:
			out = append(out, name+idx)
		case holdsResource(md):
			if md, ok = resourceTypes().desc[fold(seg)]; !ok {
				return strings.Join(out, ".") + ".resourceType"
			}
		case isChoice(md):
			if md = choiceOption(md, name); md != nil {
				out[len(out)-1] += upperFirst(name)
			} else {
				out = append(out, name+idx)
			}
		default:
			out = append(out, name+idx)
			md = fieldMessage(md, &out[len(out)-1], name, idx)
		}
	}
	return strings.Join(out, ".")
}

// fieldMessage finds the field of md that a path segment names, fixes the
// segment's spelling in *seg when it is a choice element with its type
// ("valueQuantity"), and returns the field's message type: nil for a scalar
// or an unknown field.
func fieldMessage(md protoreflect.MessageDescriptor, seg *string, name, idx string) protoreflect.MessageDescriptor {
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); f.JSONName() == name {
			return f.Message()
		}
	}
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		rest, ok := strings.CutPrefix(name, f.JSONName())
		if !ok || rest == "" || f.Message() == nil || !isChoice(f.Message()) {
			continue
		}
		if opt := choiceOption(f.Message(), lowerFirst(rest)); opt != nil {
			*seg = f.JSONName() + upperFirst(rest) + idx
			return opt
		}
	}
	return nil
}

// choiceOption returns the message type of a choice element's option, as
// "string" or "codeableConcept", or nil.
func choiceOption(md protoreflect.MessageDescriptor, name string) protoreflect.MessageDescriptor {
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); f.JSONName() == name && f.Message() != nil {
			return f.Message()
		}
	}
	return nil
}

func isChoice(md protoreflect.MessageDescriptor) bool {
	return proto.HasExtension(md.Options(), apb.E_IsChoiceType)
}

// holdsResource reports whether md is where a nested resource sits:
// ContainedResource (Bundle.entry.resource and the like) or the Any of
// DomainResource.contained.
func holdsResource(md protoreflect.MessageDescriptor) bool {
	return md.FullName() == resourceTypes().holder || md.FullName() == "google.protobuf.Any"
}

func camel(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		parts[i] = upperFirst(parts[i])
	}
	return strings.Join(parts, "")
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// fold maps "MedicationRequest", "medicationRequest" and
// "medication_request" to one key.
func fold(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

type typeTable struct {
	names  []string
	byName map[string]struct{}
	desc   map[string]protoreflect.MessageDescriptor // by fold(name)
	holder protoreflect.FullName                     // ContainedResource
}

// resourceTypes is read once from the R4 ContainedResource oneof, so the
// list is exactly what jsonformat accepts.
var resourceTypes = sync.OnceValue(func() typeTable {
	cr := (&r4pb.ContainedResource{}).ProtoReflect().Descriptor()
	t := typeTable{byName: map[string]struct{}{}, desc: map[string]protoreflect.MessageDescriptor{}, holder: cr.FullName()}
	fields := cr.Oneofs().ByName("oneof_resource").Fields()
	for i := 0; i < fields.Len(); i++ {
		md := fields.Get(i).Message()
		name := string(md.Name())
		t.names = append(t.names, name)
		t.byName[name] = struct{}{}
		t.desc[fold(name)] = md
	}
	slices.Sort(t.names)
	return t
})

// ResourceTypes lists every FHIR R4 resource type, sorted.
func ResourceTypes() []string { return slices.Clone(resourceTypes().names) }

// IsResourceType reports whether name is a FHIR R4 resource type.
func IsResourceType(name string) bool {
	_, ok := resourceTypes().byName[name]
	return ok
}
