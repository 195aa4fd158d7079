package deid

import (
	"strings"
	"sync"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	r4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// message is what the engine needs to know about one FHIR type (a resource,
// a data type, a backbone element or a primitive's extension holder): its
// members by JSON name, with choice elements expanded ("valueDateTime").
type message struct {
	typ      string // FHIR type: "Patient", "HumanName", "dateTime", "BackboneElement"
	base     string // the type a profiled type constrains: Quantity for Age; else ""
	kind     kind
	members  map[string]*member // by JSON name, without the "_" of a primitive's extension
	required []*member          // one per required element (the first option of a choice)
}

type kind uint8

const (
	kindResource kind = iota
	kindComplex       // a FHIR data type: HumanName, Extension, ...
	kindBackbone      // an element defined inline in a resource or data type
	kindPrimitive
)

// member is one JSON member of a message.
type member struct {
	name     string   // element name: "value" for "valueQuantity"
	json     string   // JSON member name: "valueQuantity"
	twin     string   // "_" + json: a primitive's extension holder
	options  []string // all JSON names of the element (choice options), for required checks
	msg      *message // the member's type
	repeated bool
	required bool
	resource bool // holds a whole resource (contained, Bundle.entry.resource)
	// targets are the resource types a Reference member may point at
	// ("Resource": any).
	targets []string
}

func (m *member) prim() bool { return m.msg != nil && m.msg.kind == kindPrimitive }

type schemaTable struct {
	resources map[string]*message // by resource type name
	types     map[string]*message // data types and primitives by FHIR type name
	byName    map[protoreflect.FullName]*message
}

// schema is built once from the google/fhir R4 descriptors reachable from
// ContainedResource, so it knows exactly the elements jsonformat accepts.
var schema = sync.OnceValue(func() *schemaTable {
	t := &schemaTable{
		resources: map[string]*message{},
		types:     map[string]*message{},
		byName:    map[protoreflect.FullName]*message{},
	}
	cr := (&r4pb.ContainedResource{}).ProtoReflect().Descriptor()
	fields := cr.Oneofs().ByName("oneof_resource").Fields()
	for i := 0; i < fields.Len(); i++ {
		md := fields.Get(i).Message()
		t.resources[string(md.Name())] = t.build(md)
	}
	return t
})

func (t *schemaTable) build(md protoreflect.MessageDescriptor) *message {
	if m, ok := t.byName[md.FullName()]; ok {
		return m
	}
	m := &message{members: map[string]*member{}}
	t.byName[md.FullName()] = m // before the fields: types are recursive
	o := md.Options()
	url, _ := proto.GetExtension(o, apb.E_FhirStructureDefinitionUrl).(string)
	sdk, _ := proto.GetExtension(o, apb.E_StructureDefinitionKind).(apb.StructureDefinitionKindValue)
	switch sdk {
	case apb.StructureDefinitionKindValue_KIND_RESOURCE:
		m.kind, m.typ = kindResource, string(md.Name())
	case apb.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE:
		m.kind, m.typ = kindPrimitive, lastSegment(url)
		if url == "" { // an enumerated code, like Patient.GenderCode
			m.typ = "code"
		}
	case apb.StructureDefinitionKindValue_KIND_COMPLEX_TYPE:
		m.kind, m.typ = kindComplex, lastSegment(url)
	default:
		m.kind, m.typ = kindBackbone, "BackboneElement"
	}
	switch m.typ {
	case "Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity":
		m.base = "Quantity" // R4 profiles of Quantity
	}
	if m.kind == kindComplex && m.typ != "" {
		if _, dup := t.types[m.typ]; !dup {
			t.types[m.typ] = m
		}
	}
	if m.kind == kindPrimitive && m.typ != "code" {
		t.types[m.typ] = m
	} else if m.kind == kindPrimitive {
		if _, ok := t.types["code"]; !ok {
			t.types["code"] = m
		}
	}
	fs := md.Fields()
	for i := 0; i < fs.Len(); i++ {
		f := fs.Get(i)
		if m.kind == kindPrimitive && f.Name() != "id" && f.Name() != "extension" {
			continue // the value is the JSON scalar; value_us, precision... are proto-only
		}
		fm := f.Message()
		if fm == nil {
			continue
		}
		if m.typ == "Reference" && f.ContainingOneof() != nil && f.JSONName() != "reference" {
			continue // resourceId, patientId...: proto-only forms of Reference.reference
		}
		req := proto.GetExtension(f.Options(), apb.E_ValidationRequirement).(apb.Requirement) == apb.Requirement_REQUIRED_BY_FHIR
		rep := f.Cardinality() == protoreflect.Repeated
		name := f.JSONName()
		switch {
		case fm.FullName() == containedName || fm.FullName() == "google.protobuf.Any":
			mem := &member{name: name, json: name, twin: "_" + name, repeated: rep, required: req, resource: true}
			mem.options = []string{name}
			m.members[name] = mem
			if req {
				m.required = append(m.required, mem)
			}
		case proto.HasExtension(fm.Options(), apb.E_IsChoiceType):
			var first *member
			var opts []string
			ofs := fm.Fields()
			for j := 0; j < ofs.Len(); j++ {
				of := ofs.Get(j)
				if of.Message() == nil {
					continue
				}
				js := name + upperFirst(of.JSONName())
				mem := &member{name: name, json: js, twin: "_" + js, msg: t.build(of.Message()), repeated: rep, required: req}
				m.members[js] = mem
				opts = append(opts, js)
				if first == nil {
					first = mem
				}
			}
			for _, js := range opts {
				m.members[js].options = opts
			}
			if req && first != nil {
				m.required = append(m.required, first)
			}
		default:
			mem := &member{name: name, json: name, twin: "_" + name, msg: t.build(fm), repeated: rep, required: req}
			mem.options = []string{name}
			mem.targets, _ = proto.GetExtension(f.Options(), apb.E_ValidReferenceType).([]string)
			m.members[name] = mem
			if req {
				m.required = append(m.required, mem)
			}
		}
	}
	return m
}

// typeNamed returns the message of a resource or data type by its FHIR
// name, or nil.
func (t *schemaTable) typeNamed(name string) *message {
	if m, ok := t.resources[name]; ok {
		return m
	}
	return t.types[name]
}

var containedName = (&r4pb.ContainedResource{}).ProtoReflect().Descriptor().FullName()

func lastSegment(url string) string {
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		return url[i+1:]
	}
	return url
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
