package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/pgtest"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// serveEnv makes the test binary run `fhiranchor` instead of the tests, so
// that TestScaleOut can start gateways as processes of their own, and kill
// one.
const serveEnv = "FHIRANCHOR_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "fhiranchor:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// gatewayProc is a `fhiranchor serve` process.
type gatewayProc struct {
	name string
	base string // http://127.0.0.1:port
	cmd  *exec.Cmd
	logf string
	done chan struct{}
}

// startGatewayProc starts `fhiranchor serve` as a child process and waits
// for the line that gives its address.
func startGatewayProc(t *testing.T, name, config, data string, env []string) *gatewayProc {
	t.Helper()
	p := &gatewayProc{name: name, logf: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.logf)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(os.Args[0], "serve", "--config", config, "--data", data, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0")
	p.cmd.Env = append(append(os.Environ(), serveEnv+"=1"), env...)
	p.cmd.Stderr = logf
	// Killed with the test binary if it dies first.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		<-p.done
		t.Fatalf("%s printed no address: %v\n%s", name, err, p.logTail())
	}
	go io.Copy(io.Discard, out)
	p.base = strings.TrimSuffix(regexp.MustCompile(`http://\S+/fhir/r4`).FindString(line), "/fhir/r4")
	if p.base == "" {
		t.Fatalf("%s: no base URL in %q", name, line)
	}
	return p
}

// kill ends the process at once, as a crashed machine would: no shutdown,
// no lock released but by PostgreSQL noticing the closed connection.
func (p *gatewayProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop interrupts the process and waits for it.
func (p *gatewayProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s ignored SIGINT for 30s\n%s", p.name, p.logTail())
		p.kill()
	}
}

func (p *gatewayProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *gatewayProc) logTail() string {
	b, _ := os.ReadFile(p.logf)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// scaleClient talks to the gateways with one token.
type scaleClient struct {
	t     *testing.T
	token string
	http  *http.Client
}

func (c *scaleClient) getJSON(base, path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, clip(b))
	}
	return json.Unmarshal(b, v)
}

type readyz struct {
	Anchoring bool
	Vault     struct{ Versions, Leaves uint64 }
}

// post sends one Bundle with push's Idempotency-Key (SHA-256 of the body),
// so a retry on another gateway of a Bundle that was committed is answered
// from the remembered response instead of stored again.
func (c *scaleClient) post(base string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/fhir/r4", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	sum := sha256.Sum256(body)
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Idempotency-Key", hex.EncodeToString(sum[:]))
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST: %d %s", resp.StatusCode, clip(b))
	}
	var out struct {
		Entry []struct{ Response struct{ Status string } }
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, err
	}
	created := 0
	for _, e := range out.Entry {
		if e.Response.Status == "201 Created" {
			created++
		}
	}
	return created, nil
}

func clip(b []byte) string {
	if len(b) > 500 {
		return string(b[:500]) + "..."
	}
	return string(b)
}

// TestScaleOut runs two gateway processes on one PostgreSQL database,
// anchoring to a geth --dev node, pushes the Synthea set through both at
// once, and kills the one that anchors midway (SIGKILL). The other takes
// over the anchoring; the killed one is restarted and rejoins. Then: every
// entry is stored once, every leaf is anchored exactly once (one unbroken
// chain of anchors on the contract covering the whole log), and every
// receipt verifies against the chain. Runs when FHIRANCHOR_INTEGRATION=1.
func TestScaleOut(t *testing.T) {
	cluster := pgtest.Start(t, pgtest.Options{})
	dsn := cluster.NewDatabase(t)
	geth := testonly.StartGeth(t)
	chainKey := geth.FundedKey(t)

	dir := t.TempDir()
	tokenKey, err := auth.LoadOrCreateDevKey(filepath.Join(dir, "issuer"))
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "fhiranchor.yaml")
	yaml := fmt.Sprintf(`database:
  url: %s
chain:
  rpc_url: %s
anchor:
  max_delay: 300ms
auth:
  keys: [%s]
research:
  export_dir: %s
# The test verifies the receipt of every leaf as one client, thousands of
# requests a second: no rate limit (the other limits keep their defaults).
limits:
  rate_per_client: -1
log:
  level: warn
`, dsn, geth.RPCURL, auth.DevKeyPath(filepath.Join(dir, "issuer")), filepath.Join(dir, "exports"))
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	master := make([]byte, 32)
	rand.Read(master)
	env := []string{
		"FHIRANCHOR_MASTER_KEY=" + hex.EncodeToString(master),
		fmt.Sprintf("FHIRANCHOR_CHAIN_KEY=%064x", chainKey.D),
	}
	procs := []*gatewayProc{
		startGatewayProc(t, "gateway-a", config, filepath.Join(dir, "a"), env),
		startGatewayProc(t, "gateway-b", config, filepath.Join(dir, "b"), env),
	}
	tok, err := auth.MintToken(tokenKey, auth.Claims{ClientID: "scale-out", Scopes: []string{"system/*.read", "system/*.write"},
		TTL: time.Hour, PurposeOfUse: "TREAT"})
	if err != nil {
		t.Fatal(err)
	}
	c := &scaleClient{t: t, token: tok, http: &http.Client{Timeout: 2 * time.Minute}}

	// leader returns the process that anchors now, waiting for one.
	leader := func() int {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			for i, p := range procs {
				var r readyz
				if p.alive() && c.getJSON(p.base, "/readyz", &r) == nil && r.Anchoring {
					return i
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no gateway anchors after a minute\n%s\n%s", procs[0].logTail(), procs[1].logTail())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	checkpoints := func(base string) []anchor.Checkpoint {
		t.Helper()
		var cps struct{ Checkpoints []anchor.Checkpoint }
		if err := c.getJSON(base, "/v1/log/checkpoints", &cps); err != nil {
			t.Fatal(err)
		}
		return cps.Checkpoints
	}

	files, _ := filepath.Glob(filepath.Join(shareddata.Dir(t), "synthea", "*.json"))
	bodies := make([][]byte, len(files))
	entries := 0
	for i, f := range files {
		if bodies[i], err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
		var b struct{ Entry []json.RawMessage }
		if err := json.Unmarshal(bodies[i], &b); err != nil {
			t.Fatal(err)
		}
		entries += len(b.Entry)
	}

	// Push with 4 clients, alternating the gateways Bundle by Bundle; a
	// Bundle whose gateway fails is retried on the other. Midway, once an
	// anchor is on chain, the anchoring gateway is killed.
	first := leader()
	var (
		acked, created atomic.Int64
		retried        atomic.Int64
		anchorsAtKill  int
		leavesAtKill   uint64
		killed         = make(chan int, 1)
		queue          = make(chan int, len(bodies))
		wg             sync.WaitGroup
		errMu          sync.Mutex
		pushErrs       []error
	)
	for i := range bodies {
		queue <- i
	}
	close(queue)
	for range 4 {
		wg.Go(func() {
			for i := range queue {
				var err error
				for attempt := range 6 {
					p := procs[(i+attempt)%2]
					if !p.alive() {
						continue
					}
					var n int
					if n, err = c.post(p.base, bodies[i]); err == nil {
						created.Add(int64(n))
						acked.Add(1)
						break
					}
					retried.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				if err != nil {
					errMu.Lock()
					pushErrs = append(pushErrs, fmt.Errorf("bundle %s: %w", filepath.Base(files[i]), err))
					errMu.Unlock()
				}
			}
		})
	}
	wg.Go(func() {
		for acked.Load() < int64(len(bodies)/3) {
			time.Sleep(20 * time.Millisecond)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			cps := checkpoints(procs[first].base)
			if n := len(cps); n > 0 && cps[n-1].Anchor != nil && cps[n-1].Anchor.Status != anchor.StatusSubmitted {
				anchorsAtKill = n
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("no anchor on chain two minutes into the push")
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		procs[first].kill()
		var r readyz
		if err := c.getJSON(procs[1-first].base, "/readyz", &r); err != nil {
			t.Errorf("readyz of the survivor: %v", err)
		}
		leavesAtKill = r.Vault.Leaves
		t.Logf("killed %s (the anchoring gateway) after %d of %d Bundles", procs[first].name, acked.Load(), len(bodies))
		killed <- first
	})
	wg.Wait()
	if len(pushErrs) > 0 {
		t.Fatalf("push: %v", errors.Join(pushErrs...))
	}
	<-killed
	survivor := 1 - first
	if got := leader(); got != survivor {
		t.Fatalf("leader is %d, want the survivor %d", got, survivor)
	}
	// The killed gateway comes back on its data dir and follows.
	procs[first] = startGatewayProc(t, procs[first].name+"-restarted", config, filepath.Join(dir, string(rune('a'+first))), env)
	t.Logf("pushed %d Bundles (%d entries) through two gateways, %d requests retried", acked.Load(), entries, retried.Load())

	// Every entry stored once: a Bundle committed before its gateway died
	// and retried elsewhere was answered from the remembered response.
	var r readyz
	if err := c.getJSON(procs[survivor].base, "/readyz", &r); err != nil {
		t.Fatal(err)
	}
	if r.Vault.Versions != uint64(entries) || created.Load() != int64(entries) {
		t.Fatalf("vault holds %d versions, %d entries answered 201; want %d each", r.Vault.Versions, created.Load(), entries)
	}

	// Every leaf anchored exactly once: wait for the survivor to anchor all.
	var cps []anchor.Checkpoint
	var leaves uint64
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if err := c.getJSON(procs[survivor].base, "/readyz", &r); err != nil {
			t.Fatal(err)
		}
		leaves = r.Vault.Leaves
		cps = checkpoints(procs[survivor].base)
		if n := len(cps); n > 0 && cps[n-1].Size >= leaves && cps[n-1].Anchor != nil && cps[n-1].Anchor.Status == anchor.StatusConfirmed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every leaf anchored after 3 minutes: %d leaves, %d checkpoints\n%s", leaves, len(cps), procs[survivor].logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	leaves = cps[len(cps)-1].Size
	// Most Bundles came after the kill: only the survivor can have
	// anchored their leaves.
	if leaves <= leavesAtKill {
		t.Errorf("no leaf came after the kill (%d at the kill, %d in all)", leavesAtKill, leaves)
	}
	ctx := t.Context()
	chain, err := eth.New(ctx, eth.Config{RPCURL: geth.RPCURL, ReadOnly: true, Contract: cps[0].Anchor.Contract})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	latest, err := chain.Latest(ctx)
	if err != nil || latest != uint64(len(cps)) {
		t.Fatalf("the contract holds %d anchors, the log %d checkpoints (%v)", latest, len(cps), err)
	}
	roots := map[uint64][]byte{}
	prevRoot, prevSize := make([]byte, 32), uint64(0)
	for i, cp := range cps {
		a, _, err := chain.Lookup(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if cp.Anchor == nil || cp.Anchor.Seq != uint64(i+1) || !bytes.Equal(a.Root[:], cp.Root) || a.TreeSize != cp.Size ||
			!bytes.Equal(a.PrevRoot[:], prevRoot) || cp.Size <= prevSize {
			t.Fatalf("anchor %d: chain root %x size %d prev %x; log %+v", i+1, a.Root, a.TreeSize, a.PrevRoot, cp)
		}
		roots[a.Seq] = cp.Root
		prevRoot, prevSize = cp.Root, cp.Size
	}

	// Every receipt verifies, against the chain's roots, from either
	// gateway: the survivor serves even indexes, the restarted one odd.
	var verified atomic.Int64
	idx := make(chan uint64, 256)
	go func() {
		defer close(idx)
		for i := range leaves {
			idx <- i
		}
	}()
	var vwg sync.WaitGroup
	var vErr atomic.Pointer[error]
	for range 4 {
		vwg.Go(func() {
			for i := range idx {
				if vErr.Load() != nil {
					continue
				}
				var rc anchor.Receipt
				err := c.getJSON(procs[(int(i)+survivor)%2].base, fmt.Sprintf("/v1/receipts/leaves/%d", i), &rc)
				switch {
				case err != nil:
				case rc.LeafIndex != i || rc.Status != anchor.StatusConfirmed || rc.Anchor == nil:
					err = fmt.Errorf("receipt of leaf %d: index %d, status %s", i, rc.LeafIndex, rc.Status)
				case !bytes.Equal(rc.Root, roots[rc.Anchor.Seq]):
					err = fmt.Errorf("receipt of leaf %d: root %x is not anchor %d's root on chain", i, rc.Root, rc.Anchor.Seq)
				default:
					err = anchor.VerifyReceipt(rc)
				}
				if err != nil {
					vErr.CompareAndSwap(nil, &err)
					continue
				}
				verified.Add(1)
			}
		})
	}
	vwg.Wait()
	if p := vErr.Load(); p != nil {
		t.Fatal(*p)
	}
	t.Logf("%d versions stored once; %d leaves (%d when the leader was killed) in %d anchors on chain (%d before the kill); %d receipts verified",
		r.Vault.Versions, leaves, leavesAtKill, len(cps), anchorsAtKill, verified.Load())

	// A research export kicked off on one gateway is polled and downloaded
	// through the other, as behind a load balancer: they share the export
	// directory and the database.
	research, err := auth.MintToken(tokenKey, auth.Claims{ClientID: "researcher", TTL: time.Hour, PurposeOfUse: "HRESCH",
		Scopes: []string{"fhiranchor/cohort.query", "fhiranchor/cohort.export"}})
	if err != nil {
		t.Fatal(err)
	}
	rc := &scaleClient{t: t, token: research, http: c.http}
	req, _ := http.NewRequest(http.MethodPost, procs[survivor].base+"/v1/cohorts:export",
		strings.NewReader(`{"criteria": {"condition": {"code": [{"system": "http://snomed.info/sct", "code": "38341003"}]}}, "type": ["Patient", "Condition"]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+research)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	status := resp.Header.Get("Content-Location")
	if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(status, procs[survivor].base) {
		t.Fatalf("export kick-off = %d, Content-Location %q", resp.StatusCode, status)
	}
	other := procs[1-survivor].base
	path := strings.TrimPrefix(status, procs[survivor].base)
	var m struct {
		Output []struct{ Type, URL, SHA256 string }
	}
	deadline = time.Now().Add(2 * time.Minute)
	for rc.getJSON(other, path, &m) != nil || len(m.Output) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("export %s not finished after 2 minutes (polled on the other gateway)", path)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, f := range m.Output {
		req, _ := http.NewRequest(http.MethodGet, other+strings.TrimPrefix(f.URL, procs[survivor].base), nil)
		req.Header.Set("Authorization", "Bearer "+research)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(body)
		if resp.StatusCode != http.StatusOK || hex.EncodeToString(sum[:]) != f.SHA256 || len(body) == 0 {
			t.Fatalf("export file %s from the other gateway: %d, %d bytes, sha256 %x; manifest %s", f.Type, resp.StatusCode, len(body), sum, f.SHA256)
		}
	}
}
