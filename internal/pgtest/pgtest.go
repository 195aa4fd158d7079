// Package pgtest starts throwaway PostgreSQL clusters for tests: initdb in a
// fresh directory, a postmaster on a free 127.0.0.1 port (no Unix socket),
// stopped and removed when the test ends. PostgreSQL 15 is installed on every
// machine of this project but not running, so `make test` needs no database
// set up by hand. Tests that use it are skipped unless FHIRANCHOR_INTEGRATION=1
// (.ci/run sets it).
//
// Run as root, the cluster runs as the OS user postgres (initdb refuses
// root); otherwise as the current user. Import it from _test.go files only.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// IntegrationEnv switches on the tests that start real services.
const IntegrationEnv = "FHIRANCHOR_INTEGRATION"

// Options tune a cluster.
type Options struct {
	// Durable keeps PostgreSQL's defaults (fsync, synchronous_commit, full
	// page writes on), as in production: benchmarks want it. Conformance
	// tests leave it off, trading crash safety of the throwaway cluster for
	// speed.
	Durable bool
}

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	Port int

	t    testing.TB
	dir  string
	bin  string
	args []string
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{}
	logf string
	mu   sync.Mutex
	dbs  atomic.Int64
}

// Start initialises and starts a cluster for the test and stops it when the
// test ends. It skips the test unless FHIRANCHOR_INTEGRATION=1.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if os.Getenv(IntegrationEnv) != "1" {
		t.Skip(IntegrationEnv + "=1 not set: no PostgreSQL cluster")
	}
	bin, err := binDir()
	if err != nil {
		t.Fatal(err)
	}
	cred, err := credential()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its parents are 0700 root, which the postgres user
	// cannot enter.
	dir, err := os.MkdirTemp("", "fhiranchor-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(data, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	c := &Cluster{Port: port, t: t, dir: dir, logf: filepath.Join(dir, "postgres.log"), bin: bin, cred: cred}
	c.args = []string{"-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "max_connections=200", "-c", "shared_buffers=128MB"}
	if !o.Durable {
		c.args = append(c.args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	t.Cleanup(c.Stop)
	c.launch()
	return c
}

// Restart starts a stopped cluster again on the same data directory and
// port, as an operator brings a database back after an outage, and waits
// until it accepts connections. A running cluster is stopped first.
func (c *Cluster) Restart() {
	c.t.Helper()
	c.Stop()
	c.launch()
}

// launch starts the postmaster and waits until it accepts connections.
func (c *Cluster) launch() {
	t := c.t
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	logf, err := os.OpenFile(c.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), c.args...)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// SIGINT is PostgreSQL's fast shutdown; the postmaster also gets it if
	// the test binary dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true, Pdeathsig: syscall.SIGINT}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	done := make(chan struct{})
	c.cmd, c.done = cmd, done
	go func() { cmd.Wait(); close(done) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return
		}
		cancel()
		select {
		case <-done:
			t.Fatalf("postgres exited before accepting connections: %v\n%s", err, c.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres did not accept connections within a minute: %v\n%s", err, c.logTail())
		}
	}
}

// DSN is the connection string of database db as the superuser.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// NewDatabase creates an empty database and returns its DSN.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", c.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return c.DSN(name)
}

// Stop shuts the cluster down (fast shutdown) and waits for it; stopping a
// stopped cluster does nothing. Restart brings it back.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.t.Errorf("postgres ignored SIGINT for 30s; killing it\n%s", c.logTail())
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	c.cmd = nil
}

// CPU is the CPU time (user and system) the cluster's processes have used
// so far: the postmaster's, its live children's (backends, WAL writer,
// checkpointer...), and that of the children that have exited. Benchmarks
// add it to their own process's to count what a write costs on both sides.
// Linux only: it reads /proc.
func (c *Cluster) CPU() (time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0, errors.New("pgtest: cluster not running")
	}
	pm := c.cmd.Process.Pid
	// The postmaster's own time and its waited-for children's.
	total, _, err := procCPU(pm, true)
	if err != nil {
		return 0, err
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("pgtest: list processes: %w", err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == pm {
			continue
		}
		t, ppid, err := procCPU(pid, false)
		if err == nil && ppid == pm { // a process gone meanwhile is skipped
			total += t
		}
	}
	return total, nil
}

// clockTick is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU reads a process's user and system time, with its waited-for
// children's if children is set, and its parent's pid.
func procCPU(pid int, children bool) (time.Duration, int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("pgtest: read process stat: %w", err)
	}
	// The command name, in parentheses, may hold spaces: fields start after
	// its last ')'. Then: state, ppid (field 4), ..., utime, stime, cutime,
	// cstime (fields 14 to 17).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("pgtest: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("pgtest: malformed /proc/%d/stat", pid)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("pgtest: malformed /proc/%d/stat", pid)
	}
	n := 2
	if children {
		n = 4
	}
	var ticks int64
	for _, v := range f[11 : 11+n] {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("pgtest: malformed /proc/%d/stat", pid)
		}
		ticks += t
	}
	return time.Duration(ticks) * clockTick, ppid, nil
}

func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(c.logf)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// binDir finds PostgreSQL's server binaries, which Debian keeps off PATH.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- { // the newest major version
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("pgtest: initdb not found on PATH or in /usr/lib/postgresql/*/bin")
}

// credential is the OS user the cluster runs as: postgres when the test
// runs as root (initdb and postgres refuse root), else nil (the current user).
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs a postgres user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgtest: postgres user has uid %q, gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}
