package deid

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is a de-identification profile: an ordered list of rules, where the
// first rule that matches an element decides what happens to it (as in the
// Microsoft FHIR anonymizer), plus parameters.
type Config struct {
	Name       string     `yaml:"name" json:"name"`
	Rules      []Rule     `yaml:"rules" json:"rules"`
	Parameters Parameters `yaml:"parameters,omitempty" json:"parameters,omitempty"`
}

// Rule selects elements and names the method applied to them. At least one
// of Path, Type and URL is set; an element matches when it satisfies all
// that are set.
type Rule struct {
	// ID names the rule in the change record. Required, unique.
	ID string `yaml:"id" json:"id"`
	// Path is a FHIR element path: "Patient.address", "Observation.value"
	// (a choice element without [x], or one option: "Observation.valueQuantity"),
	// "Address.line". The first segment is a resource type (also "Resource"
	// or "DomainResource"), matched at the resource root, or a data type,
	// matched at any element of that type; the other segments are element
	// names below it. A path of a single data type name matches elements of
	// that type.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Type is the FHIR type of the element: HumanName, Address, date,
	// string... A profile of Quantity (Age, Duration...) also matches
	// "Quantity".
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// URL matches Extension elements by their url.
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// Method is one of redact, keep, dateShift, cryptoHash, encrypt,
	// substitute, perturb, generalize, clean, vet.
	Method string `yaml:"method" json:"method"`

	// ReplaceWith is the value substitute puts in place of the element: a
	// primitive for a primitive element, a JSON object for a complex one.
	ReplaceWith any `yaml:"replaceWith,omitempty" json:"replaceWith,omitempty"`
	// Span, RangeType and RoundTo configure perturb: noise is drawn uniformly
	// from [-Span, Span] ("fixed", the default) or from [-Span*|v|, Span*|v|]
	// ("proportional"), and the result is rounded to RoundTo decimals
	// (integers stay integers).
	Span      float64 `yaml:"span,omitempty" json:"span,omitempty"`
	RangeType string  `yaml:"rangeType,omitempty" json:"rangeType,omitempty"`
	RoundTo   *int    `yaml:"roundTo,omitempty" json:"roundTo,omitempty"`
	// To configures generalize: "year" (dates to their year), "zip3"
	// (postal codes to 3 characters, restricted areas to "000"), "age90"
	// (an Age, or a Range of ages, over 89 years becomes >= 90), "birthYear"
	// (a birth date to its year, or, when the person is over 89, removed;
	// on a Patient, RelatedPerson, Person or Practitioner replaced by an
	// age-band extension "90+"), "state" (an Address.state is kept unless
	// it repeats the address's city or district, as in city-states),
	// "ageValue" and "birthValue" (the value of an Observation or
	// component whose code is an age, or a birth date: see the package
	// documentation; on any other element these rules do not match and the
	// next matching rule applies).
	To string `yaml:"to,omitempty" json:"to,omitempty"`
	// Covers lists the HIPAA Safe Harbor identifiers (A..R) the rule
	// addresses. Documentation only.
	Covers []string `yaml:"covers,omitempty" json:"covers,omitempty"`
}

// Parameters holds profile-wide settings.
type Parameters struct {
	// DateShiftRange is the largest date shift in days (default 90).
	DateShiftRange int `yaml:"dateShiftRange,omitempty" json:"dateShiftRange,omitempty"`
	// DateShiftMin is the smallest date shift in days (default 15): the
	// offset is in [-range, -min] or [min, range], so no patient's dates
	// move by only a day or two. 1 <= min <= range.
	DateShiftMin int `yaml:"dateShiftMin,omitempty" json:"dateShiftMin,omitempty"`
	// RestrictedZip3 lists the 3-digit ZIP areas with 20,000 people or fewer;
	// zip3 turns them into "000". Default: the 17 HHS areas.
	RestrictedZip3 []string `yaml:"restrictedZip3,omitempty" json:"restrictedZip3,omitempty"`
	// Marker replaces what clean removes from free text (default "[REDACTED]").
	Marker string `yaml:"marker,omitempty" json:"marker,omitempty"`
}

// Methods.
const (
	MethodRedact     = "redact"
	MethodKeep       = "keep"
	MethodDateShift  = "dateShift"
	MethodCryptoHash = "cryptoHash"
	MethodEncrypt    = "encrypt"
	MethodSubstitute = "substitute"
	MethodPerturb    = "perturb"
	MethodGeneralize = "generalize"
	MethodClean      = "clean"
	MethodVet        = "vet"
)

var methods = map[string]bool{
	MethodRedact: true, MethodKeep: true, MethodDateShift: true, MethodCryptoHash: true, MethodEncrypt: true,
	MethodSubstitute: true, MethodPerturb: true, MethodGeneralize: true, MethodClean: true, MethodVet: true,
}

var generalizeTo = map[string]bool{"year": true, "zip3": true, "age90": true, "birthYear": true, "state": true, "ageValue": true, "birthValue": true}

// defaultRestrictedZip3 are the 3-digit ZIP codes HHS lists as covering
// 20,000 or fewer people (2000 Census), which Safe Harbor maps to 000.
var defaultRestrictedZip3 = []string{"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890", "893"}

const (
	defaultDateShiftRange = 90
	defaultDateShiftMin   = 15
	defaultMarker         = "[REDACTED]"
)

// ErrInvalidConfig is wrapped by every validation error of a Config.
var ErrInvalidConfig = errors.New("invalid de-identification config")

// ParseConfig decodes a profile from YAML or JSON (JSON is YAML). Unknown
// keys are errors. The result is validated.
func ParseConfig(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a typo in a key is an error, not a silent default
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty document", ErrInvalidConfig)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one document", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Validate checks the rules and parameters. Errors name rules by position
// and id.
func (c *Config) Validate() error {
	if len(c.Rules) == 0 {
		return fmt.Errorf("%w: no rules", ErrInvalidConfig)
	}
	ids := map[string]bool{}
	for i := range c.Rules {
		r := &c.Rules[i]
		if err := r.validate(); err != nil {
			return fmt.Errorf("%w: rule %d (id %q): %v", ErrInvalidConfig, i, r.ID, err)
		}
		if ids[r.ID] {
			return fmt.Errorf("%w: rule %d: duplicate id %q", ErrInvalidConfig, i, r.ID)
		}
		ids[r.ID] = true
	}
	p := c.Parameters
	if p.DateShiftRange < 0 || p.DateShiftRange > 3650 {
		return fmt.Errorf("%w: dateShiftRange must be between 1 and 3650 days", ErrInvalidConfig)
	}
	if p.DateShiftMin < 0 {
		return fmt.Errorf("%w: dateShiftMin must be at least 1 day", ErrInvalidConfig)
	}
	if lo, hi := p.shiftBounds(); lo > hi {
		return fmt.Errorf("%w: dateShiftMin (%d, default %d) must not exceed dateShiftRange (%d, default %d)",
			ErrInvalidConfig, lo, defaultDateShiftMin, hi, defaultDateShiftRange)
	}
	for _, z := range p.RestrictedZip3 {
		if len(z) != 3 || strings.Trim(z, "0123456789") != "" {
			return fmt.Errorf("%w: restrictedZip3 entries must be 3 digits", ErrInvalidConfig)
		}
	}
	return nil
}

func (r *Rule) validate() error {
	if r.ID == "" {
		return errors.New("missing id")
	}
	if !methods[r.Method] {
		if r.Method == "" {
			return errors.New("missing method")
		}
		return fmt.Errorf("unknown method %q", r.Method)
	}
	if r.Path == "" && r.Type == "" && r.URL == "" {
		return errors.New("selects nothing: set path, type or url")
	}
	s := schema()
	if r.Type != "" && s.types[r.Type] == nil && s.resources[r.Type] == nil && r.Type != "BackboneElement" {
		return fmt.Errorf("unknown type %q", r.Type)
	}
	if r.Path != "" {
		if err := checkPath(r.Path); err != nil {
			return err
		}
	}
	if r.URL != "" && r.Type != "" && r.Type != "Extension" {
		return errors.New("url selects extensions: type must be Extension or empty")
	}
	if r.ReplaceWith != nil && r.Method != MethodSubstitute {
		return errors.New("replaceWith only applies to substitute")
	}
	if r.Method == MethodSubstitute {
		if r.ReplaceWith == nil {
			return errors.New("substitute needs replaceWith")
		}
		v, err := jsonValue(r.ReplaceWith)
		if err != nil {
			return fmt.Errorf("replaceWith: %v", err)
		}
		r.ReplaceWith = v
	}
	if (r.Span != 0 || r.RangeType != "" || r.RoundTo != nil) && r.Method != MethodPerturb {
		return errors.New("span, rangeType and roundTo only apply to perturb")
	}
	if r.Method == MethodPerturb {
		if !(r.Span > 0) || math.IsInf(r.Span, 0) {
			return errors.New("perturb needs a positive span")
		}
		if r.RangeType != "" && r.RangeType != "fixed" && r.RangeType != "proportional" {
			return fmt.Errorf("unknown rangeType %q (fixed or proportional)", r.RangeType)
		}
		if r.RoundTo != nil && (*r.RoundTo < 0 || *r.RoundTo > 28) {
			return errors.New("roundTo must be between 0 and 28")
		}
	}
	if r.To != "" && r.Method != MethodGeneralize {
		return errors.New("to only applies to generalize")
	}
	if r.Method == MethodGeneralize && !generalizeTo[r.To] {
		return fmt.Errorf("generalize needs to: year, zip3, age90, birthYear, state, ageValue or birthValue (got %q)", r.To)
	}
	for _, c := range r.Covers {
		if len(c) != 1 || c[0] < 'A' || c[0] > 'R' {
			return fmt.Errorf("covers: %q is not a Safe Harbor identifier A..R", c)
		}
	}
	return nil
}

// checkPath resolves a rule path against the R4 schema so that a typo fails
// the config instead of silently matching nothing.
func checkPath(path string) error {
	segs := strings.Split(path, ".")
	if len(segs) > 32 {
		return fmt.Errorf("path %q: more than 32 segments", path)
	}
	s := schema()
	var cur []*message
	switch segs[0] {
	case "Resource", "DomainResource":
		cur = []*message{s.resources["Patient"]} // their elements exist on every such resource
	default:
		m := s.typeNamed(segs[0])
		if m == nil {
			return fmt.Errorf("path %q: unknown type %q", path, segs[0])
		}
		cur = []*message{m}
	}
	for _, seg := range segs[1:] {
		var next []*message
		for _, m := range cur {
			if mem := m.members[seg]; mem != nil && (mem.msg != nil || mem.resource) {
				next = append(next, mem.msg)
				continue
			}
			for _, mem := range m.members { // a choice element by its name
				if mem.name == seg && len(mem.options) > 1 {
					next = append(next, mem.msg)
				}
			}
		}
		seen := map[*message]bool{nil: true} // nil: a resource holder ends the path
		next = slices.DeleteFunc(next, func(m *message) bool {
			dup := seen[m]
			seen[m] = true
			return dup
		})
		if len(next) == 0 {
			return fmt.Errorf("path %q: no element %q", path, seg)
		}
		cur = next
	}
	return nil
}

// jsonValue turns a decoded YAML value into the JSON tree form the engine
// works on (json.Number, []any, map[string]any).
func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case string, bool, json.Number:
		return x, nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errors.New("not a finite number")
		}
		return json.Number(strconv.FormatFloat(x, 'f', -1, 64)), nil
	case []any:
		if len(x) == 0 {
			return nil, errors.New("empty array")
		}
		out := make([]any, len(x))
		for i, e := range x {
			ev, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = ev
		}
		return out, nil
	case map[string]any:
		if len(x) == 0 {
			return nil, errors.New("empty object")
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			ev, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = ev
		}
		return out, nil
	case nil:
		return nil, errors.New("null is not a value")
	}
	return nil, fmt.Errorf("unsupported value of type %T", v)
}

// shiftBounds returns the smallest and largest date shift, defaults
// applied.
func (p Parameters) shiftBounds() (lo, hi int) {
	lo, hi = p.DateShiftMin, p.DateShiftRange
	if lo == 0 {
		lo = defaultDateShiftMin
	}
	if hi == 0 {
		hi = defaultDateShiftRange
	}
	return lo, hi
}

// semantics names what the engine does with a profile. It changes whenever
// a method, a check or a default changes what a profile produces, so that
// Engine.Revision changes with it.
//
//	2: vet, ageValue/birthValue, dateShiftMin, Subject, over-89 patients'
//	   dates to the year, required primitives filled, versioned references
//	   lose their version.
const semantics = "fhiranchor-deid/2"

// revision is the hex SHA-256 of the engine's semantics version, a
// newline, and the config's canonical JSON form (encoding/json: struct
// fields in declaration order, map keys sorted).
func (c *Config) revision() (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode config: %w", err)
	}
	sum := sha256.Sum256(append([]byte(semantics+"\n"), b...))
	return hex.EncodeToString(sum[:]), nil
}
