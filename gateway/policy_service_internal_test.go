package gateway

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/vault"
	"github.com/fhiranchor/fhiranchor/vault/sqlite"
)

// TestStaleSyncDoesNotUndoAnActivation reproduces a race the cmd policy
// test hit under load: the follower read the log (activation of version 2),
// a rollback to version 1 in this process took the lock first, and the
// follower then swapped version 2 back in. An activation read before the
// one running must be ignored.
func TestStaleSyncDoesNotUndoAnActivation(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "vault.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	kr, err := vault.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	v := vault.NewSealed(store, kr)
	ac := access.New(access.Config{Vault: v})
	s, err := newPolicyService(ctx, v, ac, slog.New(slog.DiscardHandler), time.Now, 0)
	if err != nil {
		t.Fatal(err)
	}
	running, leaf := ac.Active(), s.activeLeaf
	// A stale read: an older activation leaf than the one running.
	stale := access.PolicyActivation{Kind: access.KindPolicyActivation, Version: running.Version, Revision: running.Revision}
	if err := s.follow(ctx, stale, leaf-1); err != nil {
		t.Fatal(err)
	}
	if ac.Active().Engine != running.Engine || s.activeLeaf != leaf {
		t.Fatal("a stale activation read replaced the running one")
	}
}
