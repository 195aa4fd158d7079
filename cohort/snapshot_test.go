package cohort

import (
	"bytes"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"
)

// syntheaQueries touch every kind of test the index answers: demographics,
// codes, values, units, statuses, dates, windows and negation.
var syntheaQueries = []string{
	`{"criteria":{"gender":"female"}}`,
	`{"criteria":{"age":{"ge":40}}}`,
	`{"criteria":{"birthYear":{"ge":1950,"lt":1970}}}`,
	`{"criteria":{"deceased":true}}`,
	`{"criteria":{"condition":{"code":` + code(snomed, diabetes) + `}}}`,
	`{"criteria":{"condition":{"status":"active"}}}`,
	`{"criteria":{"observation":{"code":` + code(loinc, hba1c) + `,"value":{"gt":6.5},"unit":"%"}}}`,
	`{"criteria":{"observation":{"code":` + code(loinc, "8480-6") + `,"value":{"ge":140}}}}`,
	`{"criteria":{"all":[{"condition":{"code":` + code(snomed, diabetes) + `},"as":"dx"},{"observation":{"code":` + code(loinc, hba1c) + `,"value":{"gt":5.7}},"within":{"of":"dx","from":{"days":0},"to":{"days":365}}}]}}`,
	`{"criteria":{"all":[{"not":{"immunization":{}}},{"age":{"ge":18}}]}}`,
	`{"criteria":{"encounter":{"date":{"ge":"2015-01-01","lt":"2016-01-01"}}}}`,
	`{"criteria":{"any":[{"medication":{}},{"procedure":{}},{"report":{}}]}}`,
	`{"criteria":{"observation":{"code":` + code(loinc, "72166-2") + `,"valueCode":` + code(snomed, "266919005") + `}}}`,
}

// sameAnswers checks that two indexes hold the same resources and answer
// the same counts and breakdowns.
func sameAnswers(t *testing.T, want, got *Index) {
	t.Helper()
	if w, g := want.Stats(), got.Stats(); w != g {
		t.Fatalf("stats: got %+v, want %+v", g, w)
	}
	for _, s := range syntheaQueries {
		q := mustParse(t, s)
		w, g := want.Match(q, at, allow), got.Match(q, at, allow)
		if !slices.Equal(w, g) {
			t.Errorf("%s: got %d patients, want %d", s, len(g), len(w))
		}
	}
	bq := mustParse(t, `{"criteria":{"condition":{}},"breakdown":["gender","ageBand","race","ethnicity","zip3","deceased"]}`)
	wb, _ := want.Breakdown(bq, at, allow)
	gb, _ := got.Breakdown(bq, at, allow)
	if len(wb) != len(gb) {
		t.Fatalf("breakdown: got %d cells, want %d", len(gb), len(wb))
	}
	for i := range wb {
		if wb[i].Count != gb[i].Count {
			t.Errorf("breakdown cell %v: got %d, want %d", wb[i].Values, gb[i].Count, wb[i].Count)
		}
	}
	want.Patients(func(p string) {
		if !slices.Equal(want.Resources(p), got.Resources(p)) {
			t.Errorf("resources of a patient differ")
		}
	})
}

func TestSnapshotRoundTrip(t *testing.T) {
	ix := syntheaIndex(t)
	// Some churn first, so the snapshot is of an index with dead facts and
	// free numbers: replaced resources, deleted ones, a removed patient.
	entries := loadSynthea(t)
	for i, e := range entries {
		switch i % 7 {
		case 0:
			ix.Delete(e.key)
		case 1:
			if err := ix.Put(e.key, e.patient, e.typ, e.tree); err != nil {
				t.Fatal(err)
			}
		}
	}
	ix.RemovePatient(entries[len(entries)-1].patient)
	if ix.Stats().Resources == 0 {
		t.Fatal("nothing left to snapshot")
	}

	var buf bytes.Buffer
	if _, err := ix.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v in %d bytes (%d per resource)", ix.Stats(), buf.Len(), buf.Len()/ix.Stats().Resources)
	got, err := ReadIndex(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	sameAnswers(t, ix, got)

	// The loaded index takes changes like any other.
	for _, e := range entries[:500] {
		for _, x := range []*Index{ix, got} {
			if err := x.Put(e.key, e.patient, e.typ, e.tree); err != nil {
				t.Fatal(err)
			}
		}
	}
	sameAnswers(t, ix, got)
}

func TestSnapshotDamage(t *testing.T) {
	ix := fixture(t)
	var buf bytes.Buffer
	if _, err := ix.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	for _, n := range []int{0, 10, len(data) / 2, len(data) - 1} {
		if _, err := ReadIndex(bytes.NewReader(data[:n])); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("truncated to %d bytes: err = %v, want ErrBadSnapshot", n, err)
		}
	}
	bad := append([]byte("fhiranchor-cohort-index-1\n"), data[len(snapshotMagic):]...)
	if _, err := ReadIndex(bytes.NewReader(bad)); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("other format: err = %v, want ErrBadSnapshot", err)
	}
	// One patient with two resources: distinct keys read, a key twice not.
	withKeys := func(keys ...string) []byte {
		var b bytes.Buffer
		e := &encoder{w: &b}
		e.raw([]byte(snapshotMagic))
		e.uint(1)          // words: "" alone
		e.uint(0)          // facts
		e.uint(0)          // coding ids
		e.uint(1)          // patients
		e.str("Patient/p") // key, gender, birth year, over89, zip3, race, ethnicity, deceased
		e.str("")
		e.uint(1990)
		e.bool(false)
		e.str("")
		e.strs(nil)
		e.strs(nil)
		e.bool(false)
		e.uint(uint64(len(keys)))
		for _, k := range keys {
			e.str(k)
			e.uint(0)     // patient
			e.bool(false) // isDemo
			e.uint(0)     // facts
		}
		e.raw([]byte("end\n"))
		return b.Bytes()
	}
	if _, err := ReadIndex(bytes.NewReader(withKeys("Observation/a", "Observation/b"))); err != nil {
		t.Errorf("two resources: %v", err)
	}
	if _, err := ReadIndex(bytes.NewReader(withKeys("Observation/a", "Observation/a"))); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("a resource twice: err = %v, want ErrBadSnapshot", err)
	}
}

// TestCompaction replaces every resource many times: dead facts are
// dropped, and answers stay those of a fresh index.
func TestCompaction(t *testing.T) {
	fresh := NewIndex()
	ix := NewIndex()
	for round := range 3 {
		for i := range 3000 {
			pk := "p" + strconv.Itoa(i%300)
			c := strconv.Itoa(1000 + (i+round)%50)
			s := conditionJSON(c, "2012-01-0"+strconv.Itoa(1+round), "active")
			put(t, ix, pk+"/c"+strconv.Itoa(i), pk, s)
			if round == 2 {
				put(t, fresh, pk+"/c"+strconv.Itoa(i), pk, s)
			}
		}
		for i := range 3000 {
			if round < 2 && i%3 == 0 {
				ix.Delete("p" + strconv.Itoa(i%300) + "/c" + strconv.Itoa(i))
			}
		}
	}
	ix.mu.Lock()
	ix.compactLocked()
	ix.mu.Unlock()
	if len(ix.facts) != ix.liveFacts {
		t.Fatalf("after compaction %d facts, %d live", len(ix.facts), ix.liveFacts)
	}
	for c := 1000; c < 1050; c++ {
		q := mustParse(t, `{"criteria":{"condition":{"code":`+code(snomed, strconv.Itoa(c))+`,"date":{"ge":"2012-01-03"}}}}`)
		if w, g := fresh.Count(q, at, allow), ix.Count(q, at, allow); w != g {
			t.Errorf("code %d: compacted %d, fresh %d", c, g, w)
		}
	}
}

// BenchmarkIndexMemory measures what the index costs in heap per resource
// over copies of the Synthea set (fresh keys per copy: 10 copies, about
// 89,000 resources, 570 patients), and how long its snapshot takes to
// write and read. Target: at most 300 bytes per resource.
func BenchmarkIndexMemory(b *testing.B) {
	entries := loadSynthea(b)
	const copies = 10
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ix := NewIndex()
		for k := range copies {
			suffix := "/c" + strconv.Itoa(k)
			for _, e := range entries {
				if err := ix.Put(e.key+suffix, e.patient+suffix, e.typ, e.tree); err != nil {
					b.Fatal(err)
				}
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := ix.Stats()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(st.Resources), "heap-bytes/res")
		var buf bytes.Buffer
		t := time.Now()
		if _, err := ix.WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(t).Microseconds())/float64(st.Resources)*1000, "write-ns/res")
		b.ReportMetric(float64(buf.Len())/float64(st.Resources), "snapshot-bytes/res")
		t = time.Now()
		if _, err := ReadIndex(&buf); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(t).Microseconds())/float64(st.Resources)*1000, "read-ns/res")
		runtime.KeepAlive(ix)
	}
}

// BenchmarkReadIndex reads the snapshot of the Synthea set's index.
func BenchmarkReadIndex(b *testing.B) {
	ix := syntheaIndex(b)
	var buf bytes.Buffer
	if _, err := ix.WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	n := ix.Stats().Resources
	for b.Loop() {
		if _, err := ReadIndex(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/res")
}
