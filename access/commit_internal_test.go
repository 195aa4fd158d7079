package access

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
	"github.com/fhiranchor/fhiranchor/vault/sqlite"
)

// newTestControl is a Control on a SQLite vault under the default policy.
func newTestControl(t *testing.T) (*Control, *sqlite.Store) {
	t.Helper()
	store, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "vault.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	kr, err := vault.NewKeyring(bytes.Repeat([]byte{7}, vault.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(t.Context(), policy.Config{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{Vault: vault.NewSealed(store, kr)})
	c.Activate(e, 1, e.Revision())
	return c, store
}

func testObservation(id string) vault.Version {
	return vault.Version{Type: "Observation", ID: id, Version: 1, Compartment: "Patient/p",
		Body: []byte(`{"resourceType":"Observation","id":"` + id + `","status":"final","subject":{"reference":"Patient/p"}}`)}
}

// TestGatherBookkeeping: every read announced to the group commit settles
// its announcement, whether it is recorded or fails before it queues (a
// stored body that does not decode), so no committer ever waits for a
// read that will not come.
func TestGatherBookkeeping(t *testing.T) {
	c, _ := newTestControl(t)
	broken := testObservation("bad")
	broken.Body = []byte(`{"resourceType":`)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			v := testObservation("o" + string(rune('a'+i)))
			if i%2 == 1 {
				v = broken
			}
			_, err := c.Read(context.Background(), Caller{ClientID: "ehr", Purpose: "TREAT"}, v)
			if (err != nil) != (i%2 == 1) {
				t.Errorf("read %d: err = %v", i, err)
			}
		})
	}
	wg.Wait()
	g := &c.commits
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.expected != 0 || len(g.queue) != 0 || g.leading {
		t.Errorf("after every read returned: %d announced reads outstanding, %d queued, leading %v", g.expected, len(g.queue), g.leading)
	}
	if g.queuedExpected != 4 {
		t.Errorf("%d announced reads queued, want the 4 that decoded", g.queuedExpected)
	}
}

// TestGatherWaitsForReadsUnderWay: a committer holds its commit while a
// read announced before it started is under way, and commits as soon as
// that read queues or gives up; with no read under way it commits at once.
// The gather is made a minute long, so a committer that returns early did
// not wait.
func TestGatherWaitsForReadsUnderWay(t *testing.T) {
	c, _ := newTestControl(t)
	c.commits.maxGather = time.Minute
	ctx := context.Background()
	in := Caller{ClientID: "ehr", Purpose: "TREAT"}.Input("read", "Patient/p", policy.ResourceRef{Type: "Observation"}, Now(time.Now))
	e, err := decisionEntry(c.vault, in, Outcome{}, "Observation/x/_history/1")
	if err != nil {
		t.Fatal(err)
	}
	rec := []decidedEntry{e}
	within := func(what string, done <-chan []uint64) []uint64 {
		t.Helper()
		select {
		case l := <-done:
			return l
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the commit still waits", what)
			return nil
		}
	}
	commit := func(expected bool) <-chan []uint64 {
		done := make(chan []uint64, 1)
		go func() {
			l, err := c.record(ctx, rec, expected, true)
			if err != nil {
				t.Error(err)
			}
			done <- l
		}()
		return done
	}

	within("nothing under way", commit(false))

	for _, settle := range []string{"queues", "gives up"} {
		c.commits.expect()
		first := commit(false)
		select {
		case <-first:
			t.Fatalf("a read is under way (then %s): the commit did not wait for it", settle)
		case <-time.After(50 * time.Millisecond):
		}
		if settle == "queues" {
			second := within("the read under way queued", commit(true))
			got := within("the read under way queued", first)
			if len(got) != 1 || len(second) != 1 || second[0] != got[0]+1 {
				t.Errorf("leaves %v then %v, want consecutive in one commit", got, second)
			}
		} else {
			c.commits.unexpect()
			within("the read under way gave up", first)
		}
	}
}
