package auth

import (
	"slices"
	"strings"
)

// Access is one kind of FHIR interaction that a scope can grant.
type Access uint8

// The interactions a SMART scope can grant. The zero Access is not one of
// them and is never allowed.
const (
	// Create is creating a resource (FHIR create, conditional create).
	Create Access = iota + 1
	// Read is reading a resource by id, including its history (read, vread).
	Read
	// Update is replacing a resource (update).
	Update
	// Delete is deleting a resource (delete).
	Delete
	// Search is finding resources by criteria (search-type interactions).
	Search
)

// String returns the lower-case name of a, as in "read", or "invalid".
func (a Access) String() string {
	switch a {
	case Create:
		return "create"
	case Read:
		return "read"
	case Update:
		return "update"
	case Delete:
		return "delete"
	case Search:
		return "search"
	}
	return "invalid"
}

// accessSet is a bit set of Access values.
type accessSet uint8

func (a Access) bit() accessSet {
	if a < Create || a > Search {
		return 0
	}
	return 1 << a
}

const (
	readSet  accessSet = 1<<Read | 1<<Search               // SMART v1 "read"
	writeSet accessSet = 1<<Create | 1<<Update | 1<<Delete // SMART v1 "write"
	allSet             = readSet | writeSet                // "*", and v2 "cruds"
)

const (
	v2Order = "cruds" // SMART v2 permission letters, in the only legal order
	anyType = "*"     // resource type wildcard
)

// v2Letters maps each SMART v2 permission letter to what it grants.
var v2Letters = [...]Access{Create, Read, Update, Delete, Search}

// grant is what one parsed resource scope allows.
type grant struct {
	resourceType string // a FHIR resource type, or anyType
	access       accessSet
}

// Scopes is the set of OAuth scopes a token carries, parsed with the SMART on
// FHIR resource-scope grammar:
//
//	<context>/<Type|*>.<permissions>[?<query>]
//
// where context is system, user or patient and permissions is either SMART
// v1 "read" (grants Read and Search), "write" (Create, Update, Delete) or "*"
// (all), or SMART v2 letters from "cruds" in that order (any non-empty subset
// such as "rs" or "cud"; "sr" is not a scope).
//
// Only system/ scopes grant anything. user/ and patient/ scopes limit access
// to what a user may see or to one patient's compartment; enforcing that
// needs the launch context (fhirUser, patient) which this gateway does not
// resolve yet, and reading them as system scopes would widen access.
//
// A v2 scope with a query suffix (system/Observation.rs?category=laboratory)
// grants nothing. It allows only resources that match the search, and the
// gateway cannot yet evaluate a FHIR search against each resource; granting
// the whole type would give more than the authorization server meant, so we
// fail closed until such filtering exists.
//
// Tokens that are not resource scopes, such as "fhiranchor/policy.admin", and
// malformed resource scopes grant no resource access; Has still reports them.
// Scopes are case-sensitive. The zero Scopes holds nothing and allows nothing.
type Scopes struct {
	list   []string // distinct scope tokens in their original order
	grants []grant
}

// ParseScopes parses a space-separated scope string, as found in an OAuth
// scope claim. Tokens that are not RFC 6749 scope-tokens (control
// characters, quotes, backslashes, non-ASCII) are dropped; unknown scopes are
// kept for Has and grant nothing.
func ParseScopes(s string) Scopes {
	var sc Scopes
	for _, tok := range strings.Fields(s) {
		if !isScopeToken(tok) || slices.Contains(sc.list, tok) {
			continue
		}
		sc.list = append(sc.list, tok)
		if g, ok := parseResourceScope(tok); ok {
			sc.grants = append(sc.grants, g)
		}
	}
	return sc
}

// Allows reports whether the scopes grant access a on resources of
// resourceType. An empty or malformed resource type is never allowed.
func (s Scopes) Allows(resourceType string, a Access) bool {
	bit := a.bit()
	if bit == 0 || !isResourceType(resourceType) {
		return false
	}
	for _, g := range s.grants {
		if g.access&bit != 0 && (g.resourceType == anyType || g.resourceType == resourceType) {
			return true
		}
	}
	return false
}

// AllowsAny reports whether the scopes grant access a to at least one
// resource type: whether a listing across types (system-level history) can
// show the caller anything.
func (s Scopes) AllowsAny(a Access) bool {
	bit := a.bit()
	if bit == 0 {
		return false
	}
	for _, g := range s.grants {
		if g.access&bit != 0 {
			return true
		}
	}
	return false
}

// Has reports whether scope is one of the scopes, compared exactly. It is
// meant for non-resource scopes such as "fhiranchor/policy.admin"; it does
// not interpret wildcards, so use Allows for resource access.
func (s Scopes) Has(scope string) bool {
	return slices.Contains(s.list, scope)
}

// String returns the scopes space-separated, in their original order,
// without duplicates.
func (s Scopes) String() string {
	return strings.Join(s.list, " ")
}

// parseResourceScope parses a SMART resource scope. ok is false unless the
// scope grants something.
func parseResourceScope(scope string) (g grant, ok bool) {
	context, rest, found := strings.Cut(scope, "/")
	if !found || context != "system" {
		// user/ and patient/ are valid SMART contexts but grant nothing yet;
		// see the Scopes doc comment.
		return grant{}, false
	}
	typ, perm, found := strings.Cut(rest, ".")
	if !found || (typ != anyType && !isResourceType(typ)) {
		return grant{}, false
	}
	if strings.Contains(perm, "?") {
		// A query-restricted scope; see the Scopes doc comment.
		return grant{}, false
	}
	access := parsePermissions(perm)
	if access == 0 {
		return grant{}, false
	}
	return grant{resourceType: typ, access: access}, true
}

// parsePermissions returns what perm grants, or 0 when perm is not a SMART
// v1 or v2 permission.
func parsePermissions(perm string) accessSet {
	switch perm {
	case "read":
		return readSet
	case "write":
		return writeSet
	case "*":
		return allSet
	case "":
		return 0
	}
	var set accessSet
	next := 0 // letters must follow v2Order, each at most once
	for i := 0; i < len(perm); i++ {
		j := strings.IndexByte(v2Order[next:], perm[i])
		if j < 0 {
			return 0
		}
		next += j
		set |= v2Letters[next].bit()
		next++
	}
	return set
}

// isResourceType reports whether s has the shape of a FHIR resource type
// name: an upper-case ASCII letter followed by ASCII letters.
func isResourceType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// isScopeToken reports whether s is an RFC 6749 section 3.3 scope-token:
// one or more of %x21 / %x23-5B / %x5D-7E.
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
