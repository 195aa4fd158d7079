package fhir

import (
	"regexp"
	"strings"
	"sync"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	d4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	r4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The plans below are what validate.go walks: one per R4 message type that
// jsonformat can reach from ContainedResource, computed once from the same
// descriptors and annotations jsonformat reads (field maps, primitive kinds,
// required fields, reference targets, code value sets), so the hot loop is
// map lookups and switches rather than protoreflect calls.

// primKind is the FHIR primitive a message type stands for.
type primKind uint8

const (
	pkNone primKind = iota
	pkString
	pkCode // google.fhir.r4.core.Code: a code without a bound value set
	pkID
	pkOid
	pkURI
	pkURL
	pkCanonical
	pkMarkdown
	pkXhtml
	pkUUID
	pkBase64
	pkBoolean
	pkDate
	pkDateTime
	pkDecimal
	pkInstant
	pkInteger
	pkPositiveInt
	pkTime
	pkUnsignedInt
	pkReferenceID
	pkEnumCode // a code bound to a required value set (an enum)
	pkUnsupported
)

// stringKinds are read by jsonformat as a JSON string (null allowed); the
// name is its error's noun ("expected ID").
var stringKinds = map[primKind]string{
	pkString: "string", pkCode: "code", pkID: "ID", pkOid: "OID", pkURI: "uri", pkURL: "url",
	pkCanonical: "canonical", pkMarkdown: "markdown", pkXhtml: "xhtml", pkUUID: "UUID",
}

type msgPlan struct {
	desc     protoreflect.MessageDescriptor
	fields   map[string]*fieldPlan // jsonformat's FieldMap: JSON names, "_name" of primitives, choice options
	required []*fieldPlan
	prim     primKind
	regex    *regexp.Regexp // Oid and Uuid (value_regex)

	contained bool // ContainedResource: holds any resource, named by resourceType
	anyMsg    bool // google.protobuf.Any: DomainResource.contained
	reference bool // the Reference data type

	// pkEnumCode
	enumFast   map[string]bool // inputs known to be accepted
	enumValues protoreflect.EnumValueDescriptors
	enumOrig   map[string]bool // fhir_original_code annotations
	enumString bool            // the value field is a string, not an enum
}

type fieldPlan struct {
	fd        protoreflect.FieldDescriptor
	jsonName  string
	protoName string
	repeated  bool
	scalar    bool // not a message: jsonformat refuses it as "invalid field"
	msg       *msgPlan
	choice    bool     // a choice type: its options are fields of msg
	validRefs []string // valid_reference_type of a Reference field
	refOneof  bool     // one of Reference's oneof options
}

type planSet struct {
	byName    map[protoreflect.FullName]*msgPlan
	resources map[string]*msgPlan // by resourceType
	// refFields maps a resource type to the JSON name of Reference's
	// <type>_id option, as jsonformat's normalization picks it.
	refFields map[string]string
	pending   []pendingChoice
}

type pendingChoice struct {
	holder *msgPlan
	field  *fieldPlan
}

var plans = sync.OnceValue(buildPlans)

func buildPlans() *planSet {
	ps := &planSet{byName: map[protoreflect.FullName]*msgPlan{}, resources: map[string]*msgPlan{}, refFields: map[string]string{}}
	cr := (&r4pb.ContainedResource{}).ProtoReflect().Descriptor()
	ps.plan(cr)
	fields := cr.Oneofs().ByName("oneof_resource").Fields()
	for i := 0; i < fields.Len(); i++ {
		md := fields.Get(i).Message()
		ps.resources[string(md.Name())] = ps.plan(md)
	}
	for _, pc := range ps.pending {
		for name := range pc.field.msg.fields {
			if rest, ok := strings.CutPrefix(name, "_"); ok {
				pc.holder.fields["_"+pc.field.jsonName+title(rest)] = pc.field
			} else {
				pc.holder.fields[pc.field.jsonName+title(name)] = pc.field
			}
		}
	}
	ps.pending = nil
	ref := (&d4pb.Reference{}).ProtoReflect().Descriptor()
	opts := ref.Oneofs().ByName("reference").Fields()
	for i := 0; i < opts.Len(); i++ {
		f := opts.Get(i)
		if t := proto.GetExtension(f.Options(), apb.E_ReferencedFhirType).(string); t != "" {
			ps.refFields[t] = f.JSONName()
		}
	}
	return ps
}

// plan returns the plan of md, building it (and every type it reaches) on
// first use; only called while building, under sync.Once.
func (ps *planSet) plan(md protoreflect.MessageDescriptor) *msgPlan {
	if p, ok := ps.byName[md.FullName()]; ok {
		return p
	}
	p := &msgPlan{desc: md, fields: map[string]*fieldPlan{}}
	ps.byName[md.FullName()] = p
	p.contained = md.FullName() == containedName
	p.anyMsg = md.FullName() == "google.protobuf.Any"
	p.reference = proto.HasExtension(md.Options(), apb.E_FhirReferenceType)
	if isPrimitive(md) {
		p.prim = primitiveKind(md)
		switch p.prim {
		case pkOid, pkUUID:
			p.regex = regexp.MustCompile("^" + proto.GetExtension(md.Options(), apb.E_ValueRegex).(string) + "$")
		case pkEnumCode:
			p.planEnum()
		}
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		fp := ps.field(f)
		if proto.GetExtension(f.Options(), apb.E_ValidationRequirement).(apb.Requirement) == apb.Requirement_REQUIRED_BY_FHIR {
			p.required = append(p.required, fp)
		}
		if fp.choice {
			// The option names are added once every plan is complete
			// (a choice type can reach itself).
			ps.pending = append(ps.pending, pendingChoice{p, fp})
			continue
		}
		p.fields[f.JSONName()] = fp
		if fp.msg != nil && fp.msg.prim != pkNone {
			p.fields["_"+f.JSONName()] = fp
		}
	}
	return p
}

func (ps *planSet) field(f protoreflect.FieldDescriptor) *fieldPlan {
	fp := &fieldPlan{fd: f, jsonName: f.JSONName(), protoName: string(f.Name()), repeated: f.Cardinality() == protoreflect.Repeated}
	fp.refOneof = f.ContainingOneof() != nil && f.ContainingOneof().Name() == "reference" && proto.HasExtension(f.ContainingMessage().Options(), apb.E_FhirReferenceType)
	fp.validRefs = proto.GetExtension(f.Options(), apb.E_ValidReferenceType).([]string)
	if f.Message() == nil {
		fp.scalar = true
		return fp
	}
	fp.msg = ps.plan(f.Message())
	// A choice type's options are looked up in fp.msg.fields by
	// jsonformat's choice field names: "string", "_string", "quantity".
	fp.choice = isChoice(f.Message())
	return fp
}

func isPrimitive(md protoreflect.MessageDescriptor) bool {
	return proto.GetExtension(md.Options(), apb.E_StructureDefinitionKind).(apb.StructureDefinitionKindValue) == apb.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE
}

// primitiveKind follows the switch of jsonformat's parsePrimitiveType, which
// goes by the message's short name, then by a value set annotation.
func primitiveKind(md protoreflect.MessageDescriptor) primKind {
	switch md.Name() {
	case "String":
		return pkString
	case "Code":
		return pkCode
	case "Id":
		return pkID
	case "Oid":
		return pkOid
	case "Uri":
		return pkURI
	case "Url":
		return pkURL
	case "Canonical":
		return pkCanonical
	case "Markdown":
		return pkMarkdown
	case "Xhtml":
		return pkXhtml
	case "Uuid":
		return pkUUID
	case "Base64Binary":
		return pkBase64
	case "Boolean":
		return pkBoolean
	case "Date":
		return pkDate
	case "DateTime":
		return pkDateTime
	case "Decimal":
		return pkDecimal
	case "Instant":
		return pkInstant
	case "Integer":
		return pkInteger
	case "PositiveInt":
		return pkPositiveInt
	case "Time":
		return pkTime
	case "UnsignedInt":
		return pkUnsignedInt
	case "ReferenceId":
		return pkReferenceID
	}
	if proto.HasExtension(md.Options(), apb.E_FhirValuesetUrl) {
		return pkEnumCode
	}
	return pkUnsupported
}

func (p *msgPlan) planEnum() {
	f := p.desc.Fields().ByName("value")
	if f == nil {
		p.prim = pkUnsupported
		return
	}
	if f.Kind() == protoreflect.StringKind {
		p.enumString = true
		return
	}
	if f.Kind() != protoreflect.EnumKind {
		p.prim = pkUnsupported
		return
	}
	p.enumValues = f.Enum().Values()
	p.enumFast = map[string]bool{}
	p.enumOrig = map[string]bool{}
	for i := 0; i < p.enumValues.Len(); i++ {
		ev := p.enumValues.Get(i)
		if ev.Number() != 0 {
			p.enumFast[strings.ToLower(strings.ReplaceAll(string(ev.Name()), "_", "-"))] = true
			p.enumFast[string(ev.Name())] = true
		}
		// A value without the annotation reads as "", so jsonformat takes
		// "" (and null) for the zero value.
		orig := proto.GetExtension(ev.Options(), apb.E_FhirOriginalCode).(string)
		p.enumOrig[orig] = true
		p.enumFast[orig] = true
	}
}

// enumAccepts is jsonformat's UnmarshalCode for an enum-valued code.
func (p *msgPlan) enumAccepts(val string) bool {
	if p.enumString || p.enumFast[val] {
		return true
	}
	name := strings.ReplaceAll(strings.ToUpper(val), "-", "_")
	if v := p.enumValues.ByName(protoreflect.Name(name)); v != nil && v.Number() != 0 {
		return true
	}
	return p.enumOrig[val]
}

// title is jsonformat's strings.Title for the ASCII names of elements.
func title(s string) string { return upperFirst(s) }
