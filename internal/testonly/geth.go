package testonly

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"golang.org/x/crypto/sha3"
)

// integrationEnv switches on the tests that start real services (geth,
// PostgreSQL); .ci/run sets it.
const integrationEnv = "FHIRANCHOR_INTEGRATION"

// gethReadyTimeout covers the first `go tool geth`, which compiles geth
// (about 2-5 minutes on the 2-core machine); later starts take a second or two.
const gethReadyTimeout = 10 * time.Minute

// Geth is a geth --dev node (tools/geth.mod) on 127.0.0.1, mining a block as
// soon as a transaction arrives. Its chain lives in a temporary data dir, so
// it survives Stop and Start.
type Geth struct {
	RPCURL string // http://127.0.0.1:port

	t       testing.TB
	root    string
	dataDir string
	port    int
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartGeth starts a geth dev node for the test, and stops it when the test
// ends. It skips the test unless FHIRANCHOR_INTEGRATION=1.
func StartGeth(t testing.TB) *Geth {
	t.Helper()
	if os.Getenv(integrationEnv) != "1" {
		t.Skip(integrationEnv + "=1 not set: no geth dev node")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logDir := t.TempDir()
	g := &Geth{
		RPCURL:  "http://127.0.0.1:" + strconv.Itoa(port),
		t:       t,
		root:    repoRoot(t),
		dataDir: t.TempDir(),
		port:    port,
		logPath: filepath.Join(logDir, "geth.log"),
	}
	t.Cleanup(g.Stop) // runs before the temp dirs go
	g.Start()
	return g
}

// repoRoot is the repository's root directory, found from this source file.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository from the test binary")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

// Start runs the node (again, after Stop: same port, same chain) and waits
// until it answers JSON-RPC.
func (g *Geth) Start() {
	g.t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd != nil {
		g.t.Fatal("geth is already running")
	}
	logf, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		g.t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command("go", "tool", "-modfile="+filepath.Join(g.root, "tools", "geth.mod"), "geth",
		// A data dir, so the chain survives Stop and Start. With geth's default
		// cache its database preallocates 1.4 GB of disk; 64 MB makes it 18 MB.
		"--dev", "--datadir", g.dataDir, "--cache", "64",
		"--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(g.port),
		"--http.api", "eth,net,web3,debug,dev",
		// No NAT port mapping, no peers, no IPC socket: only the HTTP port,
		// on loopback.
		"--nat", "none", "--port", "0", "--nodiscover", "--maxpeers", "0", "--ipcdisable")
	cmd.Dir = g.root
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a hung node can be killed with the
	// `go tool` process that started it (see Stop); and interrupted if the
	// test binary dies without stopping it (a test timeout, say).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
	if err := cmd.Start(); err != nil {
		g.t.Fatalf("start geth: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	g.cmd, g.done = cmd, done

	deadline := time.Now().Add(gethReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := g.ready(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			g.cmd = nil
			g.t.Fatalf("geth exited before answering: %v\n%s", err, g.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.stopLocked()
			g.t.Fatalf("geth did not answer within %v: %v\n%s", gethReadyTimeout, err, g.logTail())
		}
	}
}

// ready reports whether the node answers, and for receipts too: on a chain
// with blocks, geth answers "transaction indexing is in progress" for a
// moment after it starts. (On an empty chain it does until the first block.)
func (g *Geth) ready(ctx context.Context) error {
	var head string
	if err := g.call(ctx, "eth_blockNumber", nil, &head); err != nil {
		return err
	}
	if head == "0x0" {
		return nil
	}
	return g.call(ctx, "eth_getTransactionReceipt", []any{"0x" + strings.Repeat("00", 32)}, nil)
}

// Stop interrupts the node (`go tool` passes SIGINT on to geth, which then
// writes its state to the data dir) and waits for it to exit. Stopping a
// stopped node does nothing.
func (g *Geth) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
}

func (g *Geth) stopLocked() {
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Signal(os.Interrupt)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		g.t.Errorf("geth ignored SIGINT for 30s; killing it\n%s", g.logTail())
		syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.done
	}
	g.cmd = nil
}

// FundedKey returns a new secp256k1 key whose account holds 1000 ether from
// the node's unlocked dev account.
func (g *Geth) FundedKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	priv, err := secp256k1.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var accounts []string
	if err := g.call(ctx, "eth_accounts", nil, &accounts); err != nil || len(accounts) == 0 {
		t.Fatalf("eth_accounts = %v, %v; want the dev account", accounts, err)
	}
	var tx string
	err = g.call(ctx, "eth_sendTransaction", []any{map[string]string{
		"from":  accounts[0],
		"to":    address(priv),
		"value": "0x3635c9adc5dea00000", // 1000 ether
	}}, &tx)
	if err != nil {
		t.Fatalf("fund a test account: %v", err)
	}
	for {
		var receipt *struct {
			Status string `json:"status"`
		}
		err := g.call(ctx, "eth_getTransactionReceipt", []any{tx}, &receipt)
		if err == nil && receipt != nil {
			if receipt.Status != "0x1" {
				t.Fatalf("funding transaction %s failed", tx)
			}
			return priv.ToECDSA()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("funding transaction %s not mined: %v (last answer: %v)", tx, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// address is the Ethereum account of a key: the last 20 bytes of the
// Keccak-256 of its uncompressed public key.
func address(k *secp256k1.PrivateKey) string {
	h := sha3.NewLegacyKeccak256()
	h.Write(k.PubKey().SerializeUncompressed()[1:])
	return "0x" + hex.EncodeToString(h.Sum(nil)[12:])
}

// call makes a JSON-RPC call and decodes its result into out (if not nil).
func (g *Geth) call(ctx context.Context, method string, params []any, out any) error {
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.RPCURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: decode reply (HTTP %d): %w", method, resp.StatusCode, err)
	}
	if r.Error != nil {
		return fmt.Errorf("%s: %s (%d)", method, r.Error.Message, r.Error.Code)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Result, out)
}

// logTail is the end of geth's output, for failure messages.
func (g *Geth) logTail() string {
	b, err := os.ReadFile(g.logPath)
	if err != nil {
		return ""
	}
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
