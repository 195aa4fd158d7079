package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/vault"
)

// ClientRegistry holds the SMART Backend Services clients: those of the
// configuration, and those the admin API (/v1/clients) registers, revokes
// or strips of a key. It is the token endpoint's auth.ClientStore.
//
// Admin changes are kept in the vault, as an append-only log of events per
// client in the table of remembered responses: it is the vault's one
// write-once key-to-bytes store, sealed under the master key like
// everything else there, checked by `fhiranchor audit`, and shared by
// every gateway on one database, with no schema change to either backend.
// A registration's state is its configured base (if any) with its events
// applied in order, read from the vault on every token request, so a
// revocation on one gateway is refused by all of them at once. Keys are
// "fhiranchor/v1/client" NUL id NUL time (8 bytes, big-endian): one
// client's events are one contiguous, ordered range, and can never collide
// with an idempotency key (32-byte hashes).
type ClientRegistry struct {
	vault  *vault.Sealed
	static auth.StaticClients
	mu     sync.Mutex // orders this process's appends
	now    func() time.Time
}

// NewClientRegistry returns the registry of the configured clients static
// and of the admin API's changes kept in v.
func NewClientRegistry(v *vault.Sealed, static auth.StaticClients) *ClientRegistry {
	if static == nil {
		static = auth.StaticClients{}
	}
	return &ClientRegistry{vault: v, static: static, now: time.Now}
}

var clientKeyPrefix = []byte("fhiranchor/v1/client\x00")

// clientEvent is one admin change of a client.
type clientEvent struct {
	Op     string       `json:"op"` // register, revoke, revoke_key
	Client *auth.Client `json:"client,omitempty"`
	KID    string       `json:"kid,omitempty"`
}

// ClientInfo is a registration as the admin API shows it.
type ClientInfo struct {
	auth.Client
	Revoked bool   `json:"revoked"`
	Source  string `json:"source"` // config or api
}

// Client returns the registration of id (auth.ClientStore).
func (r *ClientRegistry) Client(ctx context.Context, id string) (auth.Client, error) {
	info, err := r.lookup(ctx, id)
	if err != nil {
		return auth.Client{}, err
	}
	if info.Revoked {
		return auth.Client{}, auth.ErrRevokedClient
	}
	return info.Client, nil
}

// lookup folds id's events over its configured base.
func (r *ClientRegistry) lookup(ctx context.Context, id string) (ClientInfo, error) {
	base, configured := r.static[id]
	info := ClientInfo{Client: base, Source: "config"}
	prefix := append(append(slices.Clone(clientKeyPrefix), id...), 0)
	events, err := r.events(ctx, prefix)
	if err != nil {
		return ClientInfo{}, err
	}
	if !configured && len(events) == 0 {
		return ClientInfo{}, auth.ErrUnknownClient
	}
	for _, e := range events {
		switch e.Op {
		case "register":
			if e.Client != nil {
				info = ClientInfo{Client: *e.Client, Source: "api"}
			}
		case "revoke":
			info.Revoked = true
		case "revoke_key":
			if !slices.Contains(info.RevokedKIDs, e.KID) {
				info.RevokedKIDs = append(slices.Clone(info.RevokedKIDs), e.KID)
			}
		}
	}
	if info.ID == "" {
		return ClientInfo{}, auth.ErrUnknownClient
	}
	return info, nil
}

// events reads the events whose keys start with prefix, oldest first.
func (r *ClientRegistry) events(ctx context.Context, prefix []byte) ([]clientEvent, error) {
	var out []clientEvent
	after := prefix
	for {
		rs, err := r.vault.Store().Responses(ctx, after, 256)
		if err != nil {
			return nil, fmt.Errorf("read client registry: %w", err)
		}
		for _, resp := range rs {
			if !bytes.HasPrefix(resp.Key, prefix) {
				return out, nil
			}
			body, err := r.vault.OpenResponse(resp.Key, resp.Body)
			if err != nil {
				return nil, fmt.Errorf("read client registry: %w", err)
			}
			var e clientEvent
			if err := json.Unmarshal(body, &e); err != nil {
				return nil, fmt.Errorf("read client registry: %w", err)
			}
			out = append(out, e)
		}
		if len(rs) < 256 {
			return out, nil
		}
		after = rs[len(rs)-1].Key
	}
}

// List returns every client, configured or registered, revoked included.
func (r *ClientRegistry) List(ctx context.Context) ([]ClientInfo, error) {
	ids := map[string]bool{}
	for id := range r.static {
		ids[id] = true
	}
	after := clientKeyPrefix
	for done := false; !done; {
		rs, err := r.vault.Store().Responses(ctx, after, 256)
		if err != nil {
			return nil, fmt.Errorf("list clients: %w", err)
		}
		for _, resp := range rs {
			rest, ok := bytes.CutPrefix(resp.Key, clientKeyPrefix)
			if !ok {
				done = true
				break
			}
			if id, _, ok := bytes.Cut(rest, []byte{0}); ok {
				ids[string(id)] = true
			}
		}
		if len(rs) < 256 {
			done = true
		} else if !done {
			after = rs[len(rs)-1].Key
		}
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	slices.Sort(sorted)
	var out []ClientInfo
	for _, id := range sorted {
		info, err := r.lookup(ctx, id)
		if errors.Is(err, auth.ErrUnknownClient) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Register stores c, replacing any earlier registration of its id and
// lifting a revocation.
func (r *ClientRegistry) Register(ctx context.Context, c auth.Client) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return r.append(ctx, c.ID, clientEvent{Op: "register", Client: &c})
}

// Revoke refuses id's token requests from now on. ErrUnknownClient if id
// is not registered.
func (r *ClientRegistry) Revoke(ctx context.Context, id string) error {
	if _, err := r.lookup(ctx, id); err != nil {
		return err
	}
	return r.append(ctx, id, clientEvent{Op: "revoke"})
}

// RevokeKey refuses assertions signed with key kid of client id from now
// on, whatever the client's key set holds.
func (r *ClientRegistry) RevokeKey(ctx context.Context, id, kid string) error {
	if _, err := r.lookup(ctx, id); err != nil {
		return err
	}
	return r.append(ctx, id, clientEvent{Op: "revoke_key", KID: kid})
}

func (r *ClientRegistry) append(ctx context.Context, id string, e clientEvent) error {
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode client event: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for range 8 {
		key := append(append(slices.Clone(clientKeyPrefix), id...), 0)
		key = binary.BigEndian.AppendUint64(key, uint64(r.now().UnixNano()))
		err = r.vault.Update(ctx, func(tx *vault.SealedTx) error { return tx.PutResponse(ctx, key, body) })
		if !errors.Is(err, vault.ErrConflict) {
			break
		}
		time.Sleep(time.Millisecond) // another gateway wrote in the same nanosecond
	}
	if err != nil {
		return fmt.Errorf("store client event: %w", err)
	}
	return nil
}
