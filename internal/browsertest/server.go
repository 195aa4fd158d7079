package browsertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// Roles the Server mints a token for, as /v1/whoami names them.
const (
	RoleAdmin      = "admin"      // fhiranchor/policy.admin
	RoleOperator   = "operator"   // fhiranchor/admin
	RoleAuditor    = "auditor"    // fhiranchor/audit
	RolePatient    = "patient"    // fhiranchor/patient.self as Patient
	RoleResearcher = "researcher" // cohort query and export, purpose HRESCH
	RoleClinical   = "clinical"   // system/*.read system/*.write
)

// Server is a gateway on the embedded defaults (SQLite vault, in-process
// chain, the embedded policy, as `fhiranchor serve` runs) on 127.0.0.1,
// with the shared Synthea set loaded and a token for each role.
type Server struct {
	*testonly.Gateway
	// Tokens are bearer tokens by role (the Role constants), valid for
	// two hours.
	Tokens map[string]string
	// PatientID is the server's id of the patient RolePatient's token acts
	// as (fhirUser Patient/<id>): the first Synthea patient by file name.
	PatientID string
	// Patients are the server ids of every loaded patient.
	Patients []string
}

// ConsoleURL is the console's address on this server.
func (s *Server) ConsoleURL() string { return s.Root + "/console/" }

var shared struct {
	once     sync.Once
	srv      *Server
	err      string
	dir      string
	cleanups []func()
	failed   bool // the shared server reported an error after its start
}

// Shared returns the test binary's one Server, started (and Synthea
// loaded) by the first test that asks. The package's TestMain must call
// Main so that it stops after the last test.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "fhiranchor-console-")
		if err != nil {
			shared.err = err.Error()
			return
		}
		shared.dir = dir
		tb := &sharedTB{TB: t, dir: dir}
		func() {
			defer func() {
				// A t.Fatal inside the start ends this goroutine; later
				// tests must see the failure, not a nil server.
				if shared.srv == nil && shared.err == "" {
					shared.err = "the shared server did not start (see the first test's log)"
				}
			}()
			shared.srv = start(tb)
			tb.started = true
		}()
	})
	if shared.srv == nil {
		t.Fatalf("browsertest: %s", shared.err)
	}
	return shared.srv
}

// Main runs the tests of a package that uses Shared and then stops the
// shared server: func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	for i := len(shared.cleanups) - 1; i >= 0; i-- {
		shared.cleanups[i]()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	if shared.failed && code == 0 {
		code = 1
	}
	return code
}

// sharedTB is the testing.TB the shared server starts under: the first
// test's, except that its temp dirs and cleanups last until Main ends, and
// that once the start is over (that test may have ended) what the server
// reports goes to stderr and fails the binary in Main.
type sharedTB struct {
	testing.TB
	dir     string
	started bool
}

func (s *sharedTB) report(fatal bool, msg string) {
	if !s.started {
		if fatal {
			s.TB.Fatal(msg)
		}
		s.TB.Error(msg)
		return
	}
	fmt.Fprintln(os.Stderr, "browsertest: shared server:", msg)
	shared.failed = true
}

func (s *sharedTB) Error(args ...any)                 { s.report(false, fmt.Sprint(args...)) }
func (s *sharedTB) Errorf(format string, args ...any) { s.report(false, fmt.Sprintf(format, args...)) }
func (s *sharedTB) Fatal(args ...any)                 { s.report(true, fmt.Sprint(args...)) }
func (s *sharedTB) Fatalf(format string, args ...any) { s.report(true, fmt.Sprintf(format, args...)) }

func (s *sharedTB) Log(args ...any) {
	if !s.started {
		s.TB.Log(args...)
	}
}

func (s *sharedTB) Logf(format string, args ...any) {
	if !s.started {
		s.TB.Logf(format, args...)
	}
}

func (s *sharedTB) Cleanup(f func()) { shared.cleanups = append(shared.cleanups, f) }

func (s *sharedTB) TempDir() string {
	d, err := os.MkdirTemp(s.dir, "tb-")
	if err != nil {
		s.Fatal(err)
	}
	return d
}

// start runs the gateway, loads every Synthea Bundle as a transaction (two
// at a time) and mints the role tokens.
func start(t testing.TB) *Server {
	// A generous deadline: on a loaded machine one Synthea Bundle can take
	// longer than the default minute, and a 503 would fail every test.
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Limits: gateway.Limits{RequestTimeout: 10 * time.Minute}})
	s := &Server{Gateway: g, Tokens: map[string]string{}}
	mint := func(client, purpose, fhirUser string, scopes ...string) string {
		return g.TokenFor(t, auth.Claims{ClientID: client, Scopes: scopes, TTL: 2 * time.Hour, PurposeOfUse: purpose, FHIRUser: fhirUser})
	}
	s.Tokens[RoleClinical] = mint("console-ehr", "TREAT", "", "system/*.read", "system/*.write")
	s.Tokens[RoleAdmin] = mint("console-policy-admin", "TREAT", "", "fhiranchor/policy.admin")
	s.Tokens[RoleOperator] = mint("console-operator", "TREAT", "", "fhiranchor/admin")
	s.Tokens[RoleAuditor] = mint("console-auditor", "TREAT", "", "fhiranchor/audit")
	s.Tokens[RoleResearcher] = mint("console-researcher", "HRESCH", "", "fhiranchor/cohort.query", "fhiranchor/cohort.export")

	files := shareddata.Files(t, "synthea")
	patients := make([]string, len(files))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2) // SQLite commits one at a time anyway
	errs := make(chan string, len(files))
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			body, err := os.ReadFile(f)
			if err != nil {
				errs <- err.Error()
				return
			}
			r := g.Do(t, http.MethodPost, "", body, "Authorization", "Bearer "+s.Tokens[RoleClinical], "Idempotency-Key", filepath.Base(f))
			if r.Status != http.StatusOK {
				errs <- filepath.Base(f) + ": status " + http.StatusText(r.Status)
				return
			}
			var resp struct {
				Entry []struct {
					Response struct {
						Location string `json:"location"`
					} `json:"response"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(r.Body, &resp); err != nil {
				errs <- filepath.Base(f) + ": " + err.Error()
				return
			}
			for _, e := range resp.Entry {
				loc := e.Response.Location
				if j := strings.Index(loc, "Patient/"); j >= 0 && patients[i] == "" {
					patients[i] = strings.Split(loc[j+len("Patient/"):], "/")[0]
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("browsertest: load Synthea: %s", e)
	}
	for _, p := range patients {
		if p != "" {
			s.Patients = append(s.Patients, p)
		}
	}
	if len(s.Patients) == 0 {
		t.Fatalf("browsertest: no patient among %d Synthea files", len(files))
	}
	s.PatientID = s.Patients[0]
	s.Tokens[RolePatient] = mint("console-patient", "TREAT", "Patient/"+s.PatientID, "fhiranchor/patient.self")
	return s
}
