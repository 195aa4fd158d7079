package fhir

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	r4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// unknownMember finds the member name jsonformat refused as "unknown field"
// at path (it reports only the enclosing element), by walking the input
// tree and the R4 proto descriptors side by side. It returns path extended
// with the first unknown member, or path unchanged when it cannot tell.
// Member names are structure, not values, so they may be reported.
func unknownMember(path string, input []byte) string {
	v, err := Decode(input)
	if err != nil {
		return path
	}
	node, desc := v, protoreflect.MessageDescriptor(nil)
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		name, idx := seg, -1
		if j := strings.IndexByte(seg, '['); j > 0 && strings.HasSuffix(seg, "]") {
			n, err := strconv.Atoi(seg[j+1 : len(seg)-1])
			if err != nil {
				return path
			}
			name, idx = seg[:j], n
		}
		if i == 0 {
			desc = resourceDescriptor(node)
		} else {
			obj, ok := node.(map[string]any)
			if !ok || desc == nil {
				return path
			}
			fd := fieldByJSONName(desc, name)
			if fd == nil || fd.Message() == nil {
				return path
			}
			node, desc = obj[name], fd.Message()
		}
		if idx >= 0 {
			arr, ok := node.([]any)
			if !ok || idx >= len(arr) {
				return path
			}
			node = arr[idx]
		}
		if desc != nil && desc.FullName() == containedName {
			desc = resourceDescriptor(node)
		}
	}
	obj, ok := node.(map[string]any)
	if !ok || desc == nil {
		return path
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "resourceType" || k == "fhir_comments" {
			continue
		}
		if fieldByJSONName(desc, strings.TrimPrefix(k, "_")) == nil {
			if !elementLike.MatchString(k) {
				return path // a member name that could be data (an MRN used as a key) is not echoed
			}
			return path + "." + k
		}
	}
	return path
}

// elementLike matches names shaped like FHIR element names: letters only.
var elementLike = regexp.MustCompile(`^_?[A-Za-z]{1,40}$`)

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
