package fhir

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Value grammars that jsonformat does not enforce. A client-chosen string
// that is stored as a key (a reference's id is a patient key and a log
// subject) or as a system (an identifier's system, an extension's url) must
// be the FHIR grammar and nothing else: "Patient/<name> <SSN>" would
// otherwise become an identifier of its own, in clear, wherever the gateway
// names the patient.

// uuidGrammar is a urn:uuid's UUID, lower case as RFC 4122 urns are written.
var uuidGrammar = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// oidGrammar is the FHIR oid type without its urn:oid: prefix.
var oidGrammar = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)

// ValidID reports whether s is a FHIR id: 1 to 64 of A-Z a-z 0-9 - and '.'
// (the R4 grammar [A-Za-z0-9\-\.]{1,64}). A loop rather than a regular
// expression: the validator checks every id of every resource ingested.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
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

// ValidURI reports whether s is a FHIR uri: no whitespace and no control
// characters (the R4 regex is \S*), and not empty.
func ValidURI(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return true
}

// ValidReference reports whether s is a Reference.reference the gateway can
// store: "#" or "#<id>" (contained), "urn:uuid:<uuid>", "urn:oid:<oid>",
// "<Type>/<id>" with an optional "/_history/<id>", the same after an
// absolute http(s) base, or a conditional reference "<Type>?<query>" whose
// query has no whitespace (the gateway resolves it within a transaction and
// refuses it elsewhere).
func ValidReference(s string) bool {
	switch {
	case s == "#":
		return true
	case strings.HasPrefix(s, "#"):
		return ValidID(s[1:])
	case strings.HasPrefix(s, "urn:uuid:"):
		return uuidGrammar.MatchString(s[len("urn:uuid:"):])
	case strings.HasPrefix(s, "urn:oid:"):
		return oidGrammar.MatchString(s[len("urn:oid:"):])
	}
	if !ValidURI(s) {
		return false
	}
	if typ, query, ok := strings.Cut(s, "?"); ok {
		return IsResourceType(typ) && query != ""
	}
	return ValidLiteralReference(s)
}

// ValidLiteralReference reports whether s names one resource (version):
// "<Type>/<id>" with an optional "/_history/<id>", relative or after an
// absolute http(s) base. A token's fhirUser and organization must be one.
func ValidLiteralReference(s string) bool {
	if !ValidURI(s) || strings.ContainsAny(s, "?#") {
		return false
	}
	segs := strings.Split(s, "/")
	if base, ok := strings.CutPrefix(s, "https://"); ok || strings.HasPrefix(s, "http://") {
		if !ok {
			base = s[len("http://"):]
		}
		// host[/path]/Type/id[/_history/vid]: the last segments decide.
		segs = strings.Split(base, "/")
		switch {
		case len(segs) >= 5 && segs[len(segs)-2] == "_history":
			segs = segs[len(segs)-4:]
		case len(segs) >= 3:
			segs = segs[len(segs)-2:]
		default:
			return false
		}
	}
	switch len(segs) {
	case 2:
		return IsResourceType(segs[0]) && ValidID(segs[1])
	case 4:
		return IsResourceType(segs[0]) && ValidID(segs[1]) && segs[2] == "_history" && ValidID(segs[3])
	}
	return false
}

// Full names of the R4 data types whose values checkValues looks at.
const (
	r4Core        = "google.fhir.r4.core."
	typeURI       = r4Core + "Uri"
	typeURL       = r4Core + "Url"
	typeCanonical = r4Core + "Canonical"
	typeOid       = r4Core + "Oid"
	typeUUID      = r4Core + "Uuid"
	typeReference = r4Core + "Reference"
)

// checkValues enforces ValidURI on every uri, url, canonical, oid and uuid
// value and ValidReference on every Reference.reference, at any depth
// (extensions, contained resources, Bundle entries). Paths name elements
// only, never values. Like checkTree, the first pass only looks.
func checkValues(obj map[string]any, typ string) ValidationErrors {
	md := resourceDescriptor(obj)
	if md == nil {
		return nil
	}
	if c := (valueChecker{}); !c.walk(obj, md, "") {
		return nil
	}
	c := valueChecker{paths: true}
	c.walk(obj, md, typ)
	return c.errs
}

type valueChecker struct {
	paths bool
	errs  ValidationErrors
}

func (c *valueChecker) fail(path, reason string) {
	if c.paths {
		c.errs = append(c.errs, &ValidationError{Path: path, Reason: reason, Err: ErrInvalid})
	}
}

// walk checks the members of obj, an element of message type md at path p,
// and reports whether any value is invalid.
func (c *valueChecker) walk(obj map[string]any, md protoreflect.MessageDescriptor, p string) (bad bool) {
	if md.FullName() == typeReference {
		if s, ok := obj["reference"].(string); ok && !ValidReference(s) {
			c.fail(c.join(p, "reference"), "invalid reference: not a FHIR reference to a resource id")
			bad = true
		}
	}
	for k, v := range obj {
		if k == "resourceType" || k == "fhir_comments" {
			continue
		}
		name := strings.TrimPrefix(k, "_")
		fd := fieldByJSONName(md, name)
		if fd == nil || fd.Message() == nil {
			continue
		}
		child := fd.Message()
		kp := c.join(p, k)
		if k != name { // "_x": the primitive's id and extensions
			bad = c.walkValue(v, child, kp, false) || bad
			continue
		}
		bad = c.walkValue(v, child, kp, true) || bad
	}
	return bad
}

// walkValue checks v, the value of an element of message type md: a
// primitive's string (when primitive), an object, or an array of them.
func (c *valueChecker) walkValue(v any, md protoreflect.MessageDescriptor, p string, primitive bool) (bad bool) {
	switch x := v.(type) {
	case []any:
		for i, item := range x {
			var ip string
			if c.paths {
				ip = p + "[" + strconv.Itoa(i) + "]"
			}
			bad = c.walkValue(item, md, ip, primitive) || bad
		}
	case string:
		if !primitive {
			return false
		}
		switch md.FullName() {
		case typeURI, typeURL, typeCanonical, typeOid, typeUUID:
			if !ValidURI(x) {
				c.fail(p, "invalid uri: contains whitespace or control characters")
				return true
			}
		}
	case map[string]any:
		if md.FullName() == containedName || md.FullName() == "google.protobuf.Any" {
			if rmd := resourceDescriptor(x); rmd != nil {
				return c.walk(x, rmd, p)
			}
			return false
		}
		return c.walk(x, md, p)
	}
	return bad
}

func (c *valueChecker) join(p, k string) string {
	if !c.paths {
		return ""
	}
	return p + "." + strings.TrimPrefix(k, "_")
}
