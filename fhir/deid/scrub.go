package deid

import (
	"hash/maphash"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// scrubPattern finds identifiers in free text whatever the resource says:
// e-mail addresses, URLs (with a scheme, www., or a common top-level
// domain), IPv4 and IPv6 addresses, dates (ISO, numeric, with month
// names, month and year), SSN- and phone-like numbers, runs of 5 or more
// digits, and ages over 89 ("95 years", "aged 92").
var scrubPattern = regexp.MustCompile(`(?i)` +
	`[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}` +
	`|\b[a-z][a-z0-9+.\-]*://\S+|\bwww\.\S+|\burn:(?:uuid|oid):\S+` +
	`|\b[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.(?:com|org|net|edu|gov|mil|info|biz|io|health)\b(?:/\S*)?` +
	`|\b(?:\d{1,3}\.){3}\d{1,3}\b` +
	`|(?:\b[0-9a-f]{1,4})?(?::[0-9a-f]{0,4}){2,7}(?:%\w+)?` +
	`|\b\d{4}-\d{1,2}-\d{1,2}(?:T[0-9:.+\-Z]*)?|\b\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}\b|\b\d{4}/\d{1,2}/\d{1,2}\b` +
	`|\b(?:\d{1,2}(?:st|nd|rd|th)?\s+)?` + months + `\.?\s+(?:\d{1,2}(?:st|nd|rd|th)?,?\s+)?\d{4}\b` +
	`|\b` + months + `\.?\s+\d{1,2}(?:st|nd|rd|th)?\b` +
	`|\b\d{3}-\d{2}-\d{4}\b` +
	`|(?:\+?\d{1,3}[\s.\-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.\-])\d{3}[\s.\-]\d{4}\b` +
	`|\d{5,}` +
	`|\b(?:ag(?:e|ed)\s+)?(?:9\d|[1-9]\d\d)\s*-?\s*(?:y(?:ea)?rs?[\s\-]old|y(?:ea)?rs?|y/?o)\b` +
	`|\bag(?:e|ed)\s+(?:9\d|[1-9]\d\d)\b`)

// patternFree remembers short texts in which scrubPattern finds nothing.
// Displays and units repeat across resources ("Hemoglobin A1c/Hemoglobin.total
// in Blood" on every such Observation) and the expression costs
// microseconds a text: it was a fifth of de-identifying a Synthea
// resource. Only texts the expression found nothing in are remembered, so
// the cache can only ever skip a search that would find nothing.
var patternFree = newTextSet(1<<16, 256)

// textSet is a bounded set of strings that keeps, of each, only two
// independently and randomly seeded 64-bit hashes, never the text: a
// remembered display stays in memory as 16 bytes that say nothing about
// it. A text not added is taken for one added only if both hashes
// collide, a chance of about 2^-128 a pair, with seeds no client sees.
// When full it starts over, which costs only repeated searches.
type textSet struct {
	seeds  [2]maphash.Seed
	maxLen int // longer texts are neither kept nor looked up
	limit  int

	mu  sync.RWMutex
	set map[[2]uint64]struct{}
}

func newTextSet(limit, maxLen int) *textSet {
	return &textSet{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, maxLen: maxLen, limit: limit,
		set: make(map[[2]uint64]struct{})}
}

func (t *textSet) key(s string) [2]uint64 {
	return [2]uint64{maphash.String(t.seeds[0], s), maphash.String(t.seeds[1], s)}
}

func (t *textSet) has(s string) bool {
	if len(s) > t.maxLen {
		return false
	}
	k := t.key(s)
	t.mu.RLock()
	_, ok := t.set[k]
	t.mu.RUnlock()
	return ok
}

func (t *textSet) add(s string) {
	if len(s) > t.maxLen {
		return
	}
	k := t.key(s)
	t.mu.Lock()
	if len(t.set) >= t.limit {
		clear(t.set)
	}
	t.set[k] = struct{}{}
	t.mu.Unlock()
}

const months = `(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)`

// token is a word of free text: a run of letters and digits, folded to
// lower case, and where it is in the text.
type token struct {
	word       string
	start, end int
}

// tokenize splits s into words (runs of letters, marks and digits).
func tokenize(s string) []token {
	var out []token
	start := -1
	for i, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, token{strings.ToLower(s[start:i]), start, i})
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, token{strings.ToLower(s[start:]), start, len(s)})
	}
	return out
}

// matcher finds identifying strings in free text, on word boundaries and
// case-insensitively: a term of one word matches that word (words shorter
// than 3 characters are ignored: "Jo" is not removed from "Jo Doe's
// brother Bo", but the whole name "Jo Doe" is); a term of several words
// matches the same words next to each other in any order, so "John Smith"
// also finds "Smith, John".
type matcher struct {
	single map[string]bool
	multi  map[int]map[string]bool // word count -> sorted words joined by a space
	lens   []int
	// words holds every word of the terms of several words: a run of
	// tokens with one word outside it cannot be such a term, and is not
	// sorted and joined to be looked up (most runs of a text are not).
	words map[string]bool
}

func newMatcher(terms ...[]string) *matcher {
	m := &matcher{single: map[string]bool{}, multi: map[int]map[string]bool{}, words: map[string]bool{}}
	for _, ts := range terms {
		for _, t := range ts {
			m.add(t)
		}
	}
	for k := range m.multi {
		m.lens = append(m.lens, k)
	}
	slices.Sort(m.lens)
	return m
}

const maxTermWords = 12

func (m *matcher) add(t string) {
	toks := tokenize(t)
	switch {
	case len(toks) == 0 || len(toks) > maxTermWords:
		return
	case len(toks) == 1:
		if utf8.RuneCountInString(toks[0].word) >= 3 {
			m.single[toks[0].word] = true
		}
		return
	}
	k := len(toks)
	if m.multi[k] == nil {
		m.multi[k] = map[string]bool{}
	}
	m.multi[k][key(toks)] = true
	for _, t := range toks {
		m.words[t.word] = true
	}
}

func key(toks []token) string {
	words := make([]string, len(toks))
	for i, t := range toks {
		words[i] = t.word
	}
	slices.Sort(words)
	return strings.Join(words, " ")
}

// spans returns where terms occur among toks, the tokens of a text.
func (m *matcher) spans(toks []token) [][2]int {
	if m == nil || (len(m.single) == 0 && len(m.multi) == 0) {
		return nil
	}
	var out [][2]int
	longest := 0
	if len(m.lens) > 0 {
		longest = m.lens[len(m.lens)-1]
	}
	for i, t := range toks {
		if m.single[t.word] {
			out = append(out, [2]int{t.start, t.end})
		}
		// run counts the tokens from i on that are words of some term, up
		// to the longest term's count (a text of one name repeated must
		// not cost the square of its length).
		run := 0
		for i+run < len(toks) && run < longest && m.words[toks[i+run].word] {
			run++
		}
		for _, k := range m.lens {
			if k > run {
				break
			}
			if m.multi[k][key(toks[i:i+k])] {
				out = append(out, [2]int{t.start, toks[i+k-1].end})
			}
		}
	}
	return out
}

// scrub replaces in s what scrubPattern finds and every term of ms by
// marker.
func scrub(s, marker string, ms ...*matcher) string {
	var spans [][2]int
	// Every alternative of scrubPattern needs one of these: most published
	// displays have none, and skip the regular expression.
	if strings.ContainsAny(s, "0123456789@:.") && !patternFree.has(s) {
		for _, sp := range scrubPattern.FindAllStringIndex(s, -1) {
			spans = append(spans, [2]int{sp[0], sp[1]})
		}
		if len(spans) == 0 {
			patternFree.add(s)
		}
	}
	var toks []token
	for _, m := range ms {
		if m == nil || (len(m.single) == 0 && len(m.multi) == 0) {
			continue
		}
		if toks == nil {
			toks = tokenize(s)
		}
		spans = append(spans, m.spans(toks)...)
	}
	if len(spans) == 0 {
		return s
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	merged := spans[:1]
	for _, sp := range spans[1:] {
		if top := &merged[len(merged)-1]; sp[0] < top[1] { // overlapping: one marker
			top[1] = max(top[1], sp[1])
			continue
		}
		merged = append(merged, sp)
	}
	var b strings.Builder
	last := 0
	for _, sp := range merged {
		b.WriteString(s[last:sp[0]])
		b.WriteString(marker)
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// Lexicon returns the identifying strings of a resource tree (the form
// fhir.Decode returns): names, whole and in parts (given and family names
// and their words of 3 or more characters; never prefixes or suffixes
// alone), address lines, cities, districts and postal codes, telecom
// values, identifier values, mothers' maiden names, the names of
// Organization, Location, Group, HealthcareService and Endpoint resources,
// FamilyMemberHistory.name without the relationship words ("Aunt Bea"
// gives "Bea"), and the displays of references to people and
// organizations. Contained resources, Bundle entries and Patient.contact
// are included. The result is sorted and has no duplicates.
//
// The gateway passes the union of the lexicons of the patient's stored
// Patient and of the other resources of the same request as
// Options.Subject.Known, so that clean and the display checks remove those
// strings wherever they occur.
func Lexicon(tree map[string]any) []string {
	set := map[string]bool{}
	typ, _ := tree["resourceType"].(string)
	if m := schema().resources[typ]; m != nil {
		lexicon(m, tree, set, false)
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// personTypes are the resource types a Reference.display names a person or
// an organization for.
var personTypes = map[string]bool{
	"Patient": true, "Practitioner": true, "PractitionerRole": true, "RelatedPerson": true, "Person": true,
	"Organization": true, "Location": true, "Group": true, "HealthcareService": true, "Endpoint": true, "Device": true,
	"CareTeam": true,
}

// namedResources are the resource types whose "name" (and "alias") is a
// proper name.
var namedResources = map[string]bool{
	"Organization": true, "Location": true, "Group": true, "HealthcareService": true, "Endpoint": true,
	"CareTeam": true, "InsurancePlan": true, "OrganizationAffiliation": true,
}

// relationWords are left out of FamilyMemberHistory.name: they name a
// relationship, not a person.
var relationWords = map[string]bool{
	"mother": true, "father": true, "mom": true, "dad": true, "parent": true, "brother": true, "sister": true,
	"son": true, "daughter": true, "child": true, "aunt": true, "uncle": true, "cousin": true, "niece": true,
	"nephew": true, "grandmother": true, "grandfather": true, "grandma": true, "grandpa": true, "grandparent": true,
	"husband": true, "wife": true, "spouse": true, "partner": true, "maternal": true, "paternal": true,
	"half": true, "step": true, "twin": true, "sibling": true, "the": true, "and": true, "of": true,
	"stepmother": true, "stepfather": true, "grandson": true, "granddaughter": true, "great": true,
}

// lexicon adds the identifying strings of node (of type msg) to set.
// allDisplays also takes reference displays whatever they point at (the
// engine's own scrubbing does, as it always has).
func lexicon(msg *message, node map[string]any, set map[string]bool, allDisplays bool) {
	add := func(s string) {
		if s = strings.TrimSpace(s); len(s) >= 2 {
			set[s] = true
		}
	}
	words := func(s string, skip map[string]bool) {
		add(s)
		for _, t := range tokenize(s) {
			if !skip[t.word] && utf8.RuneCountInString(t.word) >= 3 {
				add(s[t.start:t.end])
			}
		}
	}
	switch msg.typ {
	case "HumanName":
		var whole []string
		forEachString(node["given"], func(s string) { words(s, nil); whole = append(whole, s) })
		if f, ok := node["family"].(string); ok {
			words(f, nil)
			whole = append(whole, f)
		}
		if len(whole) > 1 {
			add(strings.Join(whole, " "))
		}
		if t, ok := node["text"].(string); ok {
			words(t, nil)
		}
		return
	case "Address":
		for _, k := range []string{"line", "city", "district", "postalCode", "text"} {
			forEachString(node[k], add)
		}
	case "ContactPoint", "Identifier":
		forEachString(node["value"], add)
	case "Extension":
		if u, _ := node["url"].(string); strings.HasSuffix(u, "/patient-mothersMaidenName") {
			forEachString(node["valueString"], func(s string) { words(s, nil) })
		}
	}
	if msg.kind == kindResource {
		if namedResources[msg.typ] {
			forEachString(node["name"], add)
			forEachString(node["alias"], add)
		}
		if msg.typ == "FamilyMemberHistory" {
			forEachString(node["name"], func(s string) {
				var rest []string
				for _, t := range tokenize(s) {
					if !relationWords[t.word] {
						rest = append(rest, s[t.start:t.end])
					}
				}
				if len(rest) > 0 {
					words(strings.Join(rest, " "), relationWords)
				}
			})
		}
	}
	for k, v := range node {
		mem := msg.members[k]
		if mem == nil {
			continue
		}
		if mem.resource {
			forEachObject(v, func(o map[string]any) {
				typ, _ := o["resourceType"].(string)
				if m := schema().resources[typ]; m != nil {
					lexicon(m, o, set, allDisplays)
				}
			})
			continue
		}
		if mem.msg == nil || mem.msg.kind == kindPrimitive {
			continue
		}
		if mem.msg.typ == "Reference" {
			forEachObject(v, func(o map[string]any) {
				if d, ok := o["display"].(string); ok && (allDisplays || refToPerson(o, mem.targets)) {
					add(d)
				}
			})
		}
		forEachObject(v, func(o map[string]any) { lexicon(mem.msg, o, set, allDisplays) })
	}
}

// refToPerson reports whether a Reference may point at a person or an
// organization: by its type, by its reference's type, or else by the types
// the element may point at (targets; none known: it may name anyone).
func refToPerson(ref map[string]any, targets []string) bool {
	if t, ok := ref["type"].(string); ok {
		return personTypes[lastSegment(t)]
	}
	if r, _ := ref["reference"].(string); r != "" && !strings.HasPrefix(r, "#") && !strings.HasPrefix(r, "urn:") {
		parts := strings.Split(strings.SplitN(r, "?", 2)[0], "/")
		for i := len(parts) - 1; i >= 0; i-- {
			if schema().resources[parts[i]] != nil {
				return personTypes[parts[i]]
			}
		}
	}
	if len(targets) == 0 {
		return true
	}
	for _, t := range targets {
		if personTypes[t] || t == "Resource" {
			return true
		}
	}
	return false
}
