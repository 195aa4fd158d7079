package synthea10x_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/synthea10x"
)

type bundle struct {
	Entry []struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
	} `json:"entry"`
}

// refs collects every reference and every identifier system|value in v.
func refs(v any, key string, out, idents *[]string) {
	switch x := v.(type) {
	case map[string]any:
		if key == "identifier" {
			s, _ := x["system"].(string)
			val, _ := x["value"].(string)
			*idents = append(*idents, s+"|"+val)
		}
		for k, vv := range x {
			if s, ok := vv.(string); ok && k == "reference" {
				*out = append(*out, s)
			}
			refs(vv, k, out, idents)
		}
	case []any:
		for _, vv := range x {
			refs(vv, key, out, idents)
		}
	}
}

// TestCopies: three copies of every Synthea Bundle keep every reference
// resolvable inside its Bundle, share no id, fullUrl or identifier with
// each other or the input, and are the same for the same seed.
func TestCopies(t *testing.T) {
	const n = 3
	dir := t.TempDir()
	src := filepath.Join(shareddata.Dir(t), "synthea")
	files, err := synthea10x.Generate(src, dir, n, 7)
	if err != nil {
		t.Fatal(err)
	}
	inputs, _ := filepath.Glob(filepath.Join(src, "*.json"))
	if len(files) != n*len(inputs) {
		t.Fatalf("wrote %d files, want %d", len(files), n*len(inputs))
	}
	// Input Bundles share the ids of their inline Organizations and
	// Practitioners (the server assigns its own): an id or identifier may
	// repeat within one copy, never across copies or with the input.
	seenID := map[string]string{}    // id -> copy
	seenIdent := map[string]string{} // system|value -> copy
	checked := 0
	check := func(name string, data []byte) {
		cp := copyOf(name)
		var b bundle
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		full := map[string]bool{}
		for _, e := range b.Entry {
			full[e.FullURL] = true
			id, _ := e.Resource["id"].(string)
			if id == "" || "urn:uuid:"+id != e.FullURL {
				t.Fatalf("%s: resource id %q does not match fullUrl %q", name, id, e.FullURL)
			}
			if prev, dup := seenID[id]; dup && prev != cp {
				t.Fatalf("%s: id %s also in copy %q", name, id, prev)
			}
			seenID[id] = cp
		}
		var rs, idents []string
		refs(map[string]any{"entry": anySlice(b)}, "", &rs, &idents)
		checked += len(rs) + len(idents)
		for _, r := range rs {
			if strings.HasPrefix(r, "#") {
				continue
			}
			if !full[r] {
				t.Fatalf("%s: reference %q resolves to no entry", name, r)
			}
		}
		for _, id := range idents {
			if prev, dup := seenIdent[id]; dup && prev != cp {
				t.Fatalf("%s: identifier %s also in copy %q", name, id, prev)
			}
			seenIdent[id] = cp
		}
	}
	for _, f := range inputs {
		data, _ := os.ReadFile(f)
		check(filepath.Base(f), data)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		check(filepath.Base(f), data)
	}

	if checked < 100000 {
		t.Fatalf("only %d references and identifiers checked", checked)
	}

	// Deterministic for a seed, different for another.
	in, _ := os.ReadFile(inputs[0])
	a, _ := synthea10x.Copy(in, 7, 1)
	b, _ := synthea10x.Copy(in, 7, 1)
	c, _ := synthea10x.Copy(in, 8, 1)
	if !bytes.Equal(a, b) {
		t.Error("two runs with the same seed differ")
	}
	if bytes.Equal(a, c) {
		t.Error("two seeds give the same copy")
	}
}

// copyOf is the copy number part of an output name ("x.c2.json" -> "c2"),
// "" for an input.
func copyOf(name string) string {
	name = strings.TrimSuffix(name, ".json")
	i := strings.LastIndex(name, ".c")
	if i < 0 {
		return ""
	}
	return name[i+1:]
}

func anySlice(b bundle) []any {
	var out []any
	for _, e := range b.Entry {
		out = append(out, map[string]any{"resource": e.Resource})
	}
	return out
}

// TestStream: copies come copy by copy, the Bundles without a patient first
// in each, equal to what Copy makes; an error from fn stops the stream.
func TestStream(t *testing.T) {
	src := filepath.Join(shareddata.Dir(t), "synthea")
	files, _ := filepath.Glob(filepath.Join(src, "*.json"))
	var got []string
	err := synthea10x.Stream(src, 2, 5, 3, func(name string, k int, bundle []byte) error {
		got = append(got, fmt.Sprintf("%d/%s", k, name))
		if len(got)%len(files) > 4 {
			return nil // a few of each copy suffice: Copy is slow
		}
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		want, err := synthea10x.Copy(data, 5, k)
		if err != nil {
			return err
		}
		if !bytes.Equal(bundle, want) {
			t.Errorf("copy %d of %s differs from Copy's", k, name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*len(files) {
		t.Fatalf("%d bundles streamed, want %d", len(got), 2*len(files))
	}
	for _, k := range []int{0, len(files)} {
		for _, i := range []int{0, 1} {
			if name := got[k+i]; !strings.Contains(name, "Information") {
				t.Errorf("bundle %d of a copy is %s, want the shared organizations and practitioners first", i, name)
			}
		}
	}
	stop := errors.New("enough")
	n := 0
	if err := synthea10x.Stream(src, 100, 5, 2, func(string, int, []byte) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Stream after fn failed: err %v after %d calls, want %v after 1", err, n, stop)
	}
}
