package policy

import (
	"strconv"
	"strings"
	"sync"
)

// Decisions without consents. Most patients have no Consent on file, and
// the embedded rules then decide from the request alone: with
// input.consents empty, nothing that reads the requested resource, the
// patient or the actor's references can succeed (every such rule is
// reached only through an active consent), so the decision is fixed by
// the action, the purpose of use, the client, its organization and roles,
// the patient's managing organization and the bundle's data. The time is
// read only to check that it parses, which a time Input carries always
// does. ConsentFreeKey names those inputs, so that a caller may reuse one
// such decision for every resource and every patient of the same key (a
// chart of a hundred resources: one evaluation), where a key naming every
// input would reuse it only for the same resource.
//
// This holds for the embedded rules only: a bundle whose policy modules
// differ in a single byte (its data.json may differ: the key covers no
// data, and the data of one activated bundle never changes) gets no key,
// for its rules may read anything. TestConsentFreeKey holds the claim to
// the rules' decisions over random requests, and pins the digest of the
// rules it was checked against: an edit to them fails it until checked
// again.

// defaultRules is the digest of the embedded bundle's policy modules.
var defaultRules = sync.OnceValue(func() string {
	b, err := loadBundle(DefaultBundle())
	if err != nil {
		panic("policy: the embedded bundle does not load: " + err.Error())
	}
	return b.rules
})

// ConsentFreeKey returns a key such that two inputs with the same key and
// neither Consents nor Compiled get the same decision from the engine's
// bundle, with the revision it is for; ok is false when the input carries
// consents or the bundle's rules are not the embedded ones.
func (e *Engine) ConsentFreeKey(in Input) (key, revision string, ok bool) {
	p := e.cur.Load()
	if !p.defaultRules || len(in.Consents) > 0 || len(in.Compiled) > 0 {
		return "", "", false
	}
	var b strings.Builder
	field := func(s string) {
		// Length-prefixed: no value can shift its neighbours.
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	field(p.revision)
	field(in.Action)
	field(in.Purpose)
	field(in.Actor.ClientID)
	field(in.Actor.Organization)
	field(strconv.Itoa(len(in.Actor.Roles)))
	for _, r := range in.Actor.Roles {
		field(r)
	}
	field(in.PatientOrganization)
	return b.String(), p.revision, true
}
