package fhir

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	r4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

var containedName = (&r4pb.ContainedResource{}).ProtoReflect().Descriptor().FullName()

// resourceDescriptor returns the message descriptor of the resource a JSON
// object holds, by its resourceType.
func resourceDescriptor(node any) protoreflect.MessageDescriptor {
	obj, ok := node.(map[string]any)
	if !ok {
		return nil
	}
	typ, _ := obj["resourceType"].(string)
	fields := (&r4pb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().ByName("oneof_resource").Fields()
	for i := 0; i < fields.Len(); i++ {
		if m := fields.Get(i).Message(); string(m.Name()) == typ {
			return m
		}
	}
	return nil
}

// fieldByJSONName finds the field a JSON member name stands for, choice
// types included: "valueQuantity" is the "value" field's "quantity" option.
func fieldByJSONName(desc protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	fields := desc.Fields()
	if fd := fields.ByJSONName(name); fd != nil {
		return fd
	}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		prefix := fd.JSONName()
		if fd.Message() == nil || !strings.HasPrefix(name, prefix) || len(name) == len(prefix) {
			continue
		}
		choice := fd.Message().Oneofs().ByName("choice")
		if choice == nil {
			continue
		}
		opt := strings.ToLower(name[len(prefix):len(prefix)+1]) + name[len(prefix)+1:]
		for j := 0; j < choice.Fields().Len(); j++ {
			if choice.Fields().Get(j).JSONName() == opt {
				return choice.Fields().Get(j)
			}
		}
	}
	return nil
}
