package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// stdlibDecode is what Decode was before it parsed by itself, the
// differential oracle of FuzzDecodeStdlib: encoding/json's Decoder with
// UseNumber, nothing after the value, and a raw-bytes scan for repeated
// member names (compared by value).
func stdlibDecode(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, ErrInvalidJSON
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, ErrInvalidJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, ErrInvalidJSON
	}
	if hasDuplicateKeys(data) {
		return nil, ErrInvalidJSON
	}
	return v, nil
}

// hasDuplicateKeys scans well-formed JSON text for an object with a
// repeated member name.
func hasDuplicateKeys(data []byte) bool {
	type frame struct {
		keys   map[string]struct{}
		isObj  bool
		expKey bool
	}
	var stack []frame
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{':
			stack = append(stack, frame{isObj: true, expKey: true})
		case '[':
			stack = append(stack, frame{})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if n := len(stack); n > 0 && stack[n-1].isObj {
				stack[n-1].expKey = true
			}
		case '"':
			j := i + 1
			escaped := false
			for ; j < len(data); j++ {
				if data[j] == '\\' {
					escaped = true
					j++
					continue
				}
				if data[j] == '"' {
					break
				}
			}
			if n := len(stack); n > 0 && stack[n-1].isObj && stack[n-1].expKey {
				f := &stack[n-1]
				f.expKey = false
				key := string(data[i+1 : j])
				if escaped {
					var s string
					if json.Unmarshal(data[i:j+1], &s) == nil {
						key = s
					}
				}
				if f.keys == nil {
					f.keys = make(map[string]struct{}, 8)
				}
				if _, dup := f.keys[key]; dup {
					return true
				}
				f.keys[key] = struct{}{}
			}
			i = j
		}
	}
	return false
}

// decodeSeeds are inputs on the edges of the grammar and of escaping.
var decodeSeeds = []string{
	``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `-`, `01`, `1.`, `.5`, `1e`, `1e+`, `1E-7`, `-0.0e0`, `1.50`,
	`true`, `tru`, `nul`, `null `, "\t{\n}\r", `{"a":1,}`, `[1,]`, `[,1]`, `{"a"}`, `{"a":}`, `{,}`, `{"a":1 "b":2}`,
	`"\u00e9"`, `"\u00E9"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00"`, `"\ud83d\u0041"`, `"\ud83dx"`, `"\ud83d\ud83d\ude00"`,
	`"\u12"`, `"\x"`, `"\/"`, `"a` + "\x01" + `"`, `"a` + "\x7f" + `"`, `"\"\\\b\f\n\r\t"`,
	`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"\ud800":1,"\udbff":2}`, `{"a":{"a":1},"b":{"a":1}}`,
	`[[[[[]]]]]`, `{"a":[{"b":[{"c":null}]}]}`, `{} `, `{} x`, `{}{}`, `1 2`, "\"\xff\"", `{"é":1,"e\u0301":2}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10001) + `1` + strings.Repeat("}", 10001),
}

// FuzzDecodeStdlib holds Decode to encoding/json: the same inputs accepted
// and the same tree built from each.
func FuzzDecodeStdlib(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := Decode(in)
		want, wantErr := stdlibDecode(in)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("Decode(%q) error = %v; encoding/json's error = %v", in, err, wantErr)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("Decode(%q) error %v does not wrap ErrInvalidJSON", in, err)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(%q) = %#v; encoding/json builds %#v", in, got, want)
		}
	})
}

// TestDecodeSynthea: Decode builds encoding/json's tree for every Bundle of
// the Synthea set and every official HL7 example.
func TestDecodeSynthea(t *testing.T) {
	for _, path := range append(shareddata.Files(t, "synthea"), shareddata.Files(t, "hl7-examples")...) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(data)
		want, wantErr := stdlibDecode(data)
		if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: Decode and encoding/json disagree (errors %v, %v)", path, err, wantErr)
		}
	}
}

// BenchmarkDecode compares Decode with encoding/json's decoding of the
// same Synthea Bundle (the oracle above, repeated names included).
func BenchmarkDecode(b *testing.B) {
	data, err := os.ReadFile(shareddata.Files(b, "synthea")[0])
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		decode func([]byte) (any, error)
	}{{"fhir", Decode}, {"encoding-json", stdlibDecode}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := c.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
