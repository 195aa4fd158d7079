package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// erasureFixture is a gateway holding a few Synthea patients of each gender.
type erasureFixture struct {
	g      *testonly.Gateway
	hdr    []string // a researcher's
	admin  string   // an operator's token
	female []string // server ids of the Patients
	male   []string
	bundle map[string]string // server id -> input Bundle
}

// startErasureFixture ingests the smallest Synthea Bundles, females of them
// female and males male.
func startErasureFixture(t *testing.T, females, males int) *erasureFixture {
	t.Helper()
	g := testonly.StartGateway(t, testonly.Options{Research: gateway.ResearchConfig{
		Privacy: cohort.Privacy{Threshold: 1, Noise: cohort.NoiseNone, RoundTo: 1},
	}})
	f := &erasureFixture{g: g, hdr: researcher(t, g, "research-team"), admin: g.Token(t, gateway.AdminScope), bundle: map[string]string{}}
	files := shareddata.Files(t, "synthea")
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	slices.SortFunc(files, func(a, b string) int { return int(size(a) - size(b)) })
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	for _, file := range files {
		body := readFile(t, file)
		gender := patientOf(t, body).Gender
		list, want := &f.female, females
		if gender == "male" {
			list, want = &f.male, males
		}
		if gender == "" || len(*list) >= want {
			continue
		}
		r := g.Do(t, http.MethodPost, "", body, ehr...)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: status %d", filepath.Base(file), r.Status)
		}
		for _, e := range decodeBundle(t, r.Body).Entry {
			if loc := relativeLocation(e.Response.Location); strings.HasPrefix(loc, "Patient/") {
				id := strings.Split(loc, "/")[1]
				*list = append(*list, id)
				f.bundle[id] = file
			}
		}
		if len(f.female) == females && len(f.male) == males {
			return f
		}
	}
	t.Fatalf("found %d female and %d male patients, want %d and %d", len(f.female), len(f.male), females, males)
	return nil
}

type inputPatientResource struct {
	Gender string
	Name   []struct {
		Family string
		Given  []string
	}
}

// patientOf reads the Patient of an input Bundle.
func patientOf(t *testing.T, bundle []byte) inputPatientResource {
	t.Helper()
	var b struct {
		Entry []struct{ Resource json.RawMessage }
	}
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	for _, e := range b.Entry {
		var p struct {
			ResourceType string
			inputPatientResource
		}
		if err := json.Unmarshal(e.Resource, &p); err == nil && p.ResourceType == "Patient" {
			return p.inputPatientResource
		}
	}
	return inputPatientResource{}
}

// traces lists what would betray a patient in an export directory: the
// Patient's server id, the server id and the research copy's id (the
// pseudonym a researcher sees) of every resource in their compartment,
// their names, and the token of their compartment in holds.json. Read it
// before the erasure: the erasure shreds the copies.
func (f *erasureFixture) traces(t *testing.T, patient string) []string {
	t.Helper()
	out := []string{patient, f.holdToken(patient)}
	for _, n := range patientOf(t, readFile(t, f.bundle[patient])).Name {
		for _, s := range append([]string{n.Family}, n.Given...) {
			if len(s) >= 4 {
				out = append(out, s)
			}
		}
	}
	store := f.g.Vault.Store()
	for after := int64(0); ; {
		recs, err := store.Versions(t.Context(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		after = recs[len(recs)-1].Leaf.Seq
		for _, r := range recs {
			if r.Compartment() != "Patient/"+patient || r.Deleted || len(r.Deid) == 0 {
				continue
			}
			data, err := f.g.Vault.OpenCopy(t.Context(), r)
			if err != nil {
				t.Fatal(err)
			}
			var res struct{ ID string }
			if err := json.Unmarshal(data, &res); err != nil || len(res.ID) < 16 {
				t.Fatalf("research copy of a %s has no pseudonymous id", r.Type)
			}
			out = append(out, r.ID, res.ID)
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d traces of the patient; the scan would prove little", len(out))
	}
	return out
}

// holdToken is what the gateway writes to holds.json for a patient: the
// token records name them by.
func (f *erasureFixture) holdToken(patient string) string {
	return f.g.RecordRef("Patient", patient)
}

func (f *erasureFixture) erase(t *testing.T, patient string) {
	t.Helper()
	if r := doRoot(t, f.g, http.MethodPost, "/v1/patients/"+patient+":erase", f.admin); r.Status != http.StatusOK {
		t.Fatalf("erase = %d %s", r.Status, r.Body)
	}
}

// scanDir reads every file under dir, as someone with access to the disk
// would, and reports each that holds a trace.
func scanDir(t *testing.T, dir string, traces []string) (files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, tr := range traces {
			if bytes.Contains(data, []byte(tr)) {
				rel, _ := filepath.Rel(dir, path)
				t.Errorf("%s holds a trace of the erased patient (%.12s...)", rel, tr)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

type exportManifest struct {
	Output []struct {
		Type   string `json:"type"`
		URL    string `json:"url"`
		SHA256 string `json:"sha256"`
	} `json:"output"`
	Extension struct {
		Patients int `json:"patients"`
	} `json:"extension"`
}

// export kicks off an export of criteria on g and returns its id once it
// is finished.
func export(t *testing.T, g *testonly.Gateway, hdr []string, criteria string) string {
	t.Helper()
	id := kickOff(t, g, hdr, criteria)
	awaitExport(t, g, hdr, id)
	return id
}

func kickOff(t *testing.T, g *testonly.Gateway, hdr []string, criteria string) string {
	t.Helper()
	r := g.DoRoot(t, http.MethodPost, "/v1/cohorts:export", []byte(`{"criteria": `+criteria+`}`), hdr...)
	if r.Status != http.StatusAccepted {
		t.Fatalf("export kick-off = %d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Content-Location")
	return loc[strings.LastIndex(loc, "/")+1:]
}

// awaitExport polls the status URL until it is no longer 202.
func awaitExport(t *testing.T, g *testonly.Gateway, hdr []string, id string) testonly.Response {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := g.DoRoot(t, http.MethodGet, "/v1/cohorts/exports/"+id, nil, hdr...)
		if r.Status != http.StatusAccepted {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("export %s still running", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// manifestOf reads an export's manifest from g, which must serve it.
func manifestOf(t *testing.T, g *testonly.Gateway, hdr []string, id string) exportManifest {
	t.Helper()
	r := awaitExport(t, g, hdr, id)
	var m exportManifest
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &m) != nil {
		t.Fatalf("export status = %d %s, want a manifest", r.Status, r.Body)
	}
	if len(m.Output) == 0 {
		t.Fatalf("export %s has no files", id)
	}
	return m
}

// filePath is the path of an export file's URL, to ask any gateway.
func filePath(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Path
}

// wantGone checks that path answers 410 with an OperationOutcome that
// says the export was withdrawn for an erasure, and names nothing.
func wantGone(t *testing.T, g *testonly.Gateway, hdr []string, path string, traces []string) {
	t.Helper()
	r := g.DoRoot(t, http.MethodGet, path, nil, hdr...)
	var oo struct {
		ResourceType string
		Issue        []struct{ Code, Diagnostics string }
	}
	if r.Status != http.StatusGone || json.Unmarshal(r.Body, &oo) != nil || oo.ResourceType != "OperationOutcome" ||
		len(oo.Issue) != 1 || oo.Issue[0].Code != "deleted" || !strings.Contains(oo.Issue[0].Diagnostics, "erased") {
		t.Errorf("GET %s = %d %s, want 410 and an OperationOutcome (deleted) about an erasure", path, r.Status, r.Body)
	}
	for _, tr := range traces {
		if bytes.Contains(r.Body, []byte(tr)) {
			t.Errorf("GET %s: the outcome names the patient", path)
		}
	}
}

// wantServed checks that an export and each of its files are served, the
// files as the manifest says.
func wantServed(t *testing.T, g *testonly.Gateway, hdr []string, id string) exportManifest {
	t.Helper()
	m := manifestOf(t, g, hdr, id)
	for _, o := range m.Output {
		r := g.DoRoot(t, http.MethodGet, filePath(t, o.URL), nil, hdr...)
		sum := sha256.Sum256(r.Body)
		if r.Status != http.StatusOK || hex.EncodeToString(sum[:]) != o.SHA256 {
			t.Errorf("GET %s of export %s = %d, hash %x; want 200 and %s", o.Type, id, r.Status, sum, o.SHA256)
		}
	}
	return m
}

// wantWithdrawnOnDisk checks that nothing but the owner and the marker is
// left of an export.
func wantWithdrawnOnDisk(t *testing.T, dir, id string) {
	t.Helper()
	// The status answers 410 as soon as the erasure commits; the builder
	// or the sweep that withdraws the export deletes its files right
	// after, on its own goroutine: wait for it, a while.
	var names []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		ents, err := os.ReadDir(filepath.Join(dir, id))
		if err != nil {
			t.Fatal(err)
		}
		names = names[:0]
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if slices.Equal(names, []string{"owner", "withdrawn"}) {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("export %s holds %v 30s after its withdrawal, want only owner and withdrawn", id, names)
}

// startPeer runs a second gateway on g's vault, as another gateway on a
// shared database would (it does not run the anchored log: another is
// elected), keeping its exports in dir. stop is idempotent and runs at the
// end of the test too.
func startPeer(t *testing.T, g *testonly.Gateway, dir string) (peer *testonly.Gateway, stop func()) {
	t.Helper()
	key, err := auth.LoadOrCreateDevKey(g.Dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testonly.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := gateway.New(ctx, gateway.Config{HTTPAddr: "127.0.0.1:0", Research: gateway.ResearchConfig{
		ExportDir: dir, Privacy: cohort.Privacy{Threshold: 1, Noise: cohort.NoiseNone, RoundTo: 1},
	}}, gateway.Deps{Vault: g.Vault, Verifier: auth.NewVerifier(auth.DevKeySet(key), auth.Config{}), Log: g.Log,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("peer gateway stopped: %v", err)
			}
		})
	}
	t.Cleanup(stop) // before g's own cleanup closes the vault
	root := "http://" + srv.HTTPAddr()
	return &testonly.Gateway{Root: root, URL: root + "/fhir/r4", Dir: g.Dir, Vault: g.Vault, Logs: logs,
		Client: &http.Client{Timeout: time.Minute}}, stop
}

const (
	females = `{"gender": "female"}`
	males   = `{"gender": "male"}`
)

// TestExportErasure: erasing a patient withdraws every export holding them,
// on every gateway (sharing the export directory or not, running or down
// at the time), and nothing under an export directory keeps a trace of the
// patient; exports without the patient are untouched; new exports and
// counts leave the patient out.
func TestExportErasure(t *testing.T) {
	f := startErasureFixture(t, 3, 3)
	g, hdr := f.g, f.hdr
	shared := filepath.Join(g.Dir, "exports") // testonly's default
	g2, stop2 := startPeer(t, g, shared)
	own := t.TempDir()
	g3, stop3 := startPeer(t, g, own)

	victim := f.female[0]
	traces := f.traces(t, victim)
	fem1 := export(t, g, hdr, females) // built by g
	male1 := export(t, g, hdr, males)
	fem2 := export(t, g2, hdr, females) // built by g2, same directory
	fem3 := export(t, g3, hdr, females) // built by g3, its own directory
	male3 := export(t, g3, hdr, males)
	manifests := map[string]exportManifest{}
	for _, id := range []string{fem1, male1, fem2} {
		manifests[id] = wantServed(t, g, hdr, id)
	}
	for _, id := range []string{fem3, male3} {
		manifests[id] = wantServed(t, g3, hdr, id)
	}
	// The scan finds the patient before the erasure, or it would prove
	// nothing after.
	if !dirHolds(t, shared, traces) || !dirHolds(t, own, traces) {
		t.Fatal("before the erasure the export directories hold no trace of the patient; the scan is blind")
	}

	f.erase(t, victim)

	t.Run("the erasing gateway withdraws", func(t *testing.T) {
		wantGone(t, g, hdr, "/v1/cohorts/exports/"+fem1, traces)
		for _, o := range manifests[fem1].Output {
			wantGone(t, g, hdr, filePath(t, o.URL), traces)
		}
		wantGone(t, g, hdr, "/v1/cohorts/exports/"+fem1+"/files/Patient.ndjson", traces)
		wantWithdrawnOnDisk(t, shared, fem1)
		wantWithdrawnOnDisk(t, shared, fem2) // built by the peer, in memory there
		// An export without the patient is served as before.
		wantServed(t, g, hdr, male1)
		// Another client learns nothing of it.
		if r := g.DoRoot(t, http.MethodGet, "/v1/cohorts/exports/"+fem1, nil, researcher(t, g, "someone-else")...); r.Status != http.StatusNotFound {
			t.Errorf("another client's status request = %d, want 404", r.Status)
		}
	})
	t.Run("a gateway sharing the directory answers 410", func(t *testing.T) {
		for _, id := range []string{fem1, fem2} {
			for _, gw := range []*testonly.Gateway{g, g2} {
				wantGone(t, gw, hdr, "/v1/cohorts/exports/"+id, traces)
				for _, o := range manifests[id].Output {
					wantGone(t, gw, hdr, filePath(t, o.URL), traces)
				}
			}
		}
		wantServed(t, g2, hdr, male1)
	})
	t.Run("a gateway with its own directory follows the erasure leaf", func(t *testing.T) {
		wantGone(t, g3, hdr, "/v1/cohorts/exports/"+fem3, traces)
		for _, o := range manifests[fem3].Output {
			wantGone(t, g3, hdr, filePath(t, o.URL), traces)
		}
		wantWithdrawnOnDisk(t, own, fem3)
		wantServed(t, g3, hdr, male3)
	})
	t.Run("nothing under the export directories keeps a trace", func(t *testing.T) {
		if n := scanDir(t, shared, traces) + scanDir(t, own, traces); n < 8 {
			t.Errorf("scanned %d files; want the other exports' too", n)
		}
	})
	t.Run("the log names exports, not the patient", func(t *testing.T) {
		for _, gw := range []*testonly.Gateway{g, g2, g3} {
			logs := gw.Logs.Bytes()
			for _, tr := range traces {
				if bytes.Contains(logs, []byte(tr)) {
					t.Errorf("a gateway's log holds a trace of the erased patient (%.12s...)", tr)
				}
			}
		}
		all := string(g.Logs.Bytes()) + string(g2.Logs.Bytes()) + string(g3.Logs.Bytes())
		for _, id := range []string{fem1, fem2, fem3} {
			if !strings.Contains(all, "cohort export withdrawn") || !strings.Contains(all, "export="+id) {
				t.Errorf("no log line tells that export %s was withdrawn", id)
			}
		}
	})

	// A gateway down at the time of an erasure withdraws on its start,
	// before anyone asks.
	stop3()
	victim2 := f.male[0]
	traces2 := f.traces(t, victim2)
	f.erase(t, victim2)
	g3, stop3 = startPeer(t, g, own)
	t.Run("a gateway down at the erasure withdraws when it starts", func(t *testing.T) {
		// The marker comes first, then the files go: wait for both.
		deadline := time.Now().Add(30 * time.Second)
		for {
			ents, err := os.ReadDir(filepath.Join(own, male3))
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the restarted gateway did not withdraw the export")
			}
			time.Sleep(50 * time.Millisecond)
		}
		wantWithdrawnOnDisk(t, own, male3)
		wantGone(t, g3, hdr, "/v1/cohorts/exports/"+male3, traces2)
		wantGone(t, g, hdr, "/v1/cohorts/exports/"+male1, traces2) // the erasing gateway did its own
		scanDir(t, own, traces2)
		scanDir(t, shared, traces2)
	})

	t.Run("new exports and counts leave the erased out", func(t *testing.T) {
		for _, gw := range []*testonly.Gateway{g, g2, g3} {
			id := export(t, gw, hdr, females)
			if m := wantServed(t, gw, hdr, id); m.Extension.Patients != len(f.female)-1 {
				t.Errorf("a new export holds %d patients, want %d", m.Extension.Patients, len(f.female)-1)
			}
			res, r := askCohort(t, gw, "count", `{"criteria": `+females+`}`, hdr)
			if r.Status != http.StatusOK || res.Result.Count == nil || *res.Result.Count != len(f.female)-1 {
				t.Errorf("female count = %d %s, want %d", r.Status, r.Body, len(f.female)-1)
			}
		}
		scanDir(t, shared, traces)
		scanDir(t, own, traces)
	})

	// Withdrawn stays withdrawn across a restart; the rest is still served.
	fresh := export(t, g, hdr, females)
	t.Run("withdrawn stays withdrawn across a restart", func(t *testing.T) {
		// Peers first: they share g's vault, which the restart reopens.
		stop2()
		stop3()
		g.Restart(t)
		wantGone(t, g, hdr, "/v1/cohorts/exports/"+fem1, traces)
		wantGone(t, g, hdr, "/v1/cohorts/exports/"+fem2, traces)
		wantWithdrawnOnDisk(t, shared, fem1)
		wantServed(t, g, hdr, fresh)
		scanDir(t, shared, append(traces, traces2...))
	})
}

// dirHolds tells whether any file under dir holds one of traces.
func dirHolds(t *testing.T, dir string, traces []string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, tr := range traces {
			if bytes.Contains(data, []byte(tr)) {
				found = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestExportErasedWhileBuilding: an export kicked off before an erasure
// and finished after it never serves the erased patient, whichever moment
// of the build the erasure falls on.
func TestExportErasedWhileBuilding(t *testing.T) {
	stages := []struct {
		stage     string
		withdrawn bool // else served without the patient
	}{
		{"selected", false}, // chosen, not yet read: the shredded copies are skipped
		{"files", true},     // written, holds.json not yet: the builder's own check
		{"holds", true},     // holds.json written: the erasing gateway's sweep, then the builder's marker check
	}
	f := startErasureFixture(t, len(stages)+1, 1)
	g, hdr := f.g, f.hdr
	dir := filepath.Join(g.Dir, "exports")
	for i, c := range stages {
		t.Run(c.stage, func(t *testing.T) {
			victim := f.female[i]
			traces := f.traces(t, victim)
			var once sync.Once
			erased := make(chan int, 1)
			restore := gateway.SetExportStageHook(func(stage string) {
				if stage != c.stage {
					return
				}
				// Not f.erase: this runs on the gateway's goroutine.
				once.Do(func() { erased <- eraseRaw(g, f.admin, victim) })
			})
			defer restore()
			id := kickOff(t, g, hdr, females)
			r := awaitExport(t, g, hdr, id)
			// The status can answer 410 as soon as the erasure commits,
			// before the hook has its HTTP answer: wait for the hook.
			select {
			case st := <-erased:
				if st != http.StatusOK {
					t.Fatalf("erase during the build = %d", st)
				}
			case <-time.After(time.Minute):
				t.Fatal("the build never reached stage " + c.stage)
			}
			if c.withdrawn {
				if r.Status != http.StatusGone {
					t.Errorf("status after an erasure at %s = %d %s, want 410", c.stage, r.Status, r.Body)
				}
				wantGone(t, g, hdr, "/v1/cohorts/exports/"+id, traces)
				wantGone(t, g, hdr, "/v1/cohorts/exports/"+id+"/files/Patient.ndjson", traces)
				wantWithdrawnOnDisk(t, dir, id)
			} else {
				wantServed(t, g, hdr, id)
			}
			scanDir(t, dir, traces)
		})
	}
}

// eraseRaw erases a patient without a *testing.T, for a hook.
func eraseRaw(g *testonly.Gateway, tok, patient string) int {
	req, _ := http.NewRequest(http.MethodPost, g.Root+"/v1/patients/"+patient+":erase", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := g.Client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
