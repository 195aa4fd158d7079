package anchor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// Errors a Log stops on: they need an operator, not a retry.
var (
	// ErrForeignAnchor means the contract holds an anchor this log did not
	// make: another writer uses the contract, or the log's Store was
	// replaced or rolled back.
	ErrForeignAnchor = errors.New("anchor: chain holds an anchor this log did not make")
	// ErrChainMismatch means the chain or contract is not the one the log
	// anchored to: another chain id or contract address, or confirmed
	// anchors that the contract no longer holds.
	ErrChainMismatch = errors.New("anchor: chain does not hold this log's anchors")
	// ErrLeafMismatch means the leaf source returned a leaf whose hash is not
	// the one the log holds at that index: the vault's leaf was altered.
	ErrLeafMismatch = errors.New("anchor: leaf differs from the logged leaf")
	// ErrInvalidRange means a consistency proof was asked for tree sizes
	// other than 0 < from <= to.
	ErrInvalidRange = errors.New("anchor: invalid tree size range")
)

// Leaf is a log leaf as the source holds it. Index is its position in the
// log, fixed when the leaf was queued: the vault's Seq - 1.
type Leaf struct {
	Index uint64
	Type  LeafType
	Data  []byte // LeafData(Type, commitment)
}

// LeafSource returns up to limit leaves with Index >= after (that is, after
// the first `after` leaves of the log), in Index order, with no gaps. Every
// leaf it ever returned MUST be returned again, unchanged, at the same
// Index: a leaf's position is fixed once it is acknowledged. It MUST be safe
// for concurrent use. The gateway adapts vault.Store.Leaves, whose Seq is
// Index + 1, so `after` passes through unchanged.
type LeafSource func(ctx context.Context, after uint64, limit int) ([]Leaf, error)

// Config is the batching and chain-following policy of a Log, and the key
// that signs its checkpoints. Zero fields take their defaults.
type Config struct {
	// SigningKey is the note signer key ("PRIVATE+KEY+name+hash+base64",
	// Ed25519) that signs every checkpoint the Log writes; empty writes
	// unsigned checkpoints. Its name is the checkpoints' origin. It is a
	// secret: never log it.
	SigningKey string
	// Origin is the first line of the log's checkpoints, naming the log
	// (c2sp.org/tlog-checkpoint), e.g. "fhiranchor.example/log". It MUST
	// be SigningKey's name; empty means that name.
	Origin string
	// MaxLeaves is the most new leaves one checkpoint, and so one anchor,
	// adds; default 16384, at most 1<<20 (the pending hashes are held in
	// memory).
	MaxLeaves int
	// MaxDelay is how long after the oldest unanchored leaf was read a
	// checkpoint is written and anchored at the latest, chain permitting;
	// default 10s.
	MaxDelay time.Duration
	// Confirmations is the depth at which an anchor, and the receipts it
	// covers, are confirmed; default 1 (mined).
	Confirmations uint64
	// Poll is how often the Log reads new leaves and follows its
	// transactions; default 250ms.
	Poll time.Duration
	// Retry is the first wait after a chain or storage failure; it doubles
	// with each failure in a row, up to 32 times Retry; default 1s.
	Retry time.Duration
	// Resubmit is how long an anchor's transaction may stay unmined before
	// the Log asks the contract and, if it does not hold the anchor, sends
	// it again; default 2m.
	Resubmit time.Duration
	// Metrics, if set, is told of every anchor this Log sees mined.
	Metrics Metrics
}

// Metrics receives what a Log does, for an operator's metrics. Its methods
// MUST return quickly and MUST be safe for concurrent use.
type Metrics interface {
	// Mined is called once an anchor's transaction is seen mined, with the
	// gas it used (0 if the chain does not tell).
	Mined(gasUsed uint64)
}

// gasMeter is a Chain that tells the gas a transaction used (anchor/eth's
// does).
type gasMeter interface {
	GasUsed(ctx context.Context, tx [32]byte) (uint64, error)
}

// Default values of Config fields.
const (
	DefaultMaxLeaves     = 16384
	DefaultMaxDelay      = 10 * time.Second
	DefaultConfirmations = 1
	DefaultPoll          = 250 * time.Millisecond
	DefaultRetry         = time.Second
	DefaultResubmit      = 2 * time.Minute
	maxMaxLeaves         = 1 << 20
)

// Validate reports whether c can configure a Log.
func (c Config) Validate() error {
	switch {
	case c.MaxLeaves < 0 || c.MaxLeaves > maxMaxLeaves:
		return fmt.Errorf("anchor: maxLeaves %d not in [1, %d]", c.MaxLeaves, maxMaxLeaves)
	case c.MaxDelay < 0:
		return fmt.Errorf("anchor: maxDelay %v is negative", c.MaxDelay)
	case c.Poll < 0:
		return fmt.Errorf("anchor: poll %v is negative", c.Poll)
	case c.Retry < 0:
		return fmt.Errorf("anchor: retry %v is negative", c.Retry)
	case c.Resubmit < 0:
		return fmt.Errorf("anchor: resubmit %v is negative", c.Resubmit)
	}
	if c.Origin != "" {
		if err := checkLine("origin", c.Origin); err != nil {
			return fmt.Errorf("anchor: %w", err)
		}
	}
	if c.SigningKey != "" {
		s, err := note.NewSigner(c.SigningKey)
		if err != nil {
			return fmt.Errorf("anchor: checkpoint signing key: %w", err) // never the key
		}
		if c.Origin != "" && s.Name() != c.Origin {
			return fmt.Errorf("anchor: the checkpoint signing key is named %q, not the origin %q", s.Name(), c.Origin)
		}
	}
	return nil
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxLeaves == 0 {
		c.MaxLeaves = DefaultMaxLeaves
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.Confirmations == 0 {
		c.Confirmations = DefaultConfirmations
	}
	if c.Poll == 0 {
		c.Poll = DefaultPoll
	}
	if c.Retry == 0 {
		c.Retry = DefaultRetry
	}
	if c.Resubmit == 0 {
		c.Resubmit = DefaultResubmit
	}
	return c
}

// readChunk is the most leaves one source read asks for.
const readChunk = 4096

// Log is fhiranchor's append-only Merkle log. Its leaves are the vault's
// queued leaves, at the positions the vault gave them; Run batches them into
// checkpoints and anchors each checkpoint on a chain, in order, one at a
// time. Receipt, Consistency and Checkpoints serve proofs from the Store.
//
// Run is the only writer of the Store; the read methods are safe to call
// concurrently with it and with each other.
type Log struct {
	cfg    Config
	store  Store
	leaves LeafSource
	chain  Chain
	info   ChainInfo
	logger *slog.Logger
	signer note.Signer // nil: checkpoints are not signed
	vkey   string      // signer's verifier key

	size    atomic.Uint64 // of the last checkpoint this process knows, for readers
	running atomic.Bool

	// Owned by Run.
	tree    *tree          // the tree of the last checkpoint
	cp      Checkpoint     // the last checkpoint; Size 0 if none
	last    AnchorRecord   // the last anchor; Seq 0 if none
	open    []AnchorRecord // the anchors not confirmed yet, by Seq
	batch   batch
	checked bool // the chain was checked against the Store
	chainBO backoff
	readBO  backoff
}

// New returns a Log over store, reading leaves from leaves and anchoring on
// chain. It loads the tree and checks it against its last checkpoint, and
// checks that chain is the chain and contract the log anchored to
// (ErrChainMismatch). It does not contact the chain: Run does, so a Log
// starts while the chain is unreachable. A nil logger means slog.Default().
func New(ctx context.Context, cfg Config, store Store, leaves LeafSource, chain Chain, logger *slog.Logger) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || leaves == nil || chain == nil {
		return nil, errors.New("anchor: new log: store, leaf source and chain are required")
	}
	if logger == nil {
		logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	l := &Log{
		cfg:     cfg,
		store:   store,
		leaves:  leaves,
		chain:   chain,
		info:    chain.Info(),
		logger:  logger,
		batch:   batch{max: cfg.MaxLeaves, delay: cfg.MaxDelay},
		chainBO: backoff{base: cfg.Retry},
		readBO:  backoff{base: cfg.Retry},
	}
	if cfg.SigningKey != "" {
		var err error
		if l.signer, err = note.NewSigner(cfg.SigningKey); err != nil {
			return nil, fmt.Errorf("anchor: checkpoint signing key: %w", err)
		}
		if l.vkey, err = CheckpointVerifierKey(cfg.SigningKey); err != nil {
			return nil, fmt.Errorf("anchor: %w", err)
		}
	}
	if err := l.load(ctx); err != nil {
		return nil, fmt.Errorf("anchor: load log: %w", err)
	}
	return l, nil
}

// VerifierKey returns the note verifier key ("name+hash+base64") that
// verifies the checkpoints this Log signs, or "" if it signs none. It is
// public: publish it where verifiers find it.
func (l *Log) VerifierKey() string { return l.vkey }

// sign returns the signed note of the checkpoint of size and root, or ""
// if the Log has no key.
func (l *Log) sign(size uint64, root []byte) (string, error) {
	if l.signer == nil {
		return "", nil
	}
	msg, err := SignCheckpoint(CheckpointBody{Origin: l.signer.Name(), Size: size, Root: root}, l.signer)
	if err != nil {
		return "", err
	}
	return string(msg), nil
}

// signed fills in the note of a checkpoint written before the log signed
// its checkpoints. It signs the root only once it has recomputed it from
// the stored tree, so a checkpoint row altered on its own is not signed. The
// note is not stored: Ed25519 is deterministic, so each call makes the same.
func (l *Log) signed(ctx context.Context, cp *Checkpoint) error {
	if cp.Note != "" || l.signer == nil {
		return nil
	}
	t, err := loadTree(ctx, l.store, cp.Size)
	if err != nil {
		return err
	}
	if !bytes.Equal(t.root(), cp.Root) {
		return fmt.Errorf("stored tree of size %d does not hash to its checkpoint's root", cp.Size)
	}
	n, err := l.sign(cp.Size, cp.Root)
	if err != nil {
		return fmt.Errorf("sign checkpoint %d: %w", cp.Size, err)
	}
	cp.Note = n
	return nil
}

// load reads the log's state from the Store and checks it hangs together.
func (l *Log) load(ctx context.Context) error {
	cp, err := l.store.LastCheckpoint(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	t, err := loadTree(ctx, l.store, cp.Size)
	if err != nil {
		return err
	}
	if cp.Size > 0 && !bytes.Equal(t.root(), cp.Root) {
		return fmt.Errorf("stored tree of size %d does not hash to its checkpoint's root", cp.Size)
	}
	last, err := l.store.LastAnchor(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	open, err := l.store.Unconfirmed(ctx)
	if err != nil {
		return err
	}
	if last.Seq > 0 {
		if last.ChainID != l.info.ChainID || !strings.EqualFold(last.Contract, l.info.Contract) {
			return fmt.Errorf("%w: the log is anchored on chain %d, contract %s; configured: chain %d, contract %s",
				ErrChainMismatch, last.ChainID, last.Contract, l.info.ChainID, l.info.Contract)
		}
		if last.TreeSize > cp.Size {
			return fmt.Errorf("anchor %d covers %d leaves, the tree has %d", last.Seq, last.TreeSize, cp.Size)
		}
	}
	// At most one checkpoint waits for its anchor: Run writes the next one
	// only once the last is anchored.
	if after, err := l.store.Checkpoints(ctx, last.TreeSize, 2); err != nil {
		return err
	} else if len(after) > 1 {
		return fmt.Errorf("%d checkpoints after the last anchor (tree size %d), want at most 1", len(after), last.TreeSize)
	}
	l.tree, l.cp, l.last, l.open = t, cp, last, open
	l.size.Store(cp.Size)
	return nil
}

// Size returns the number of leaves in the log's tree: the size of its last
// checkpoint. Leaves read but not yet checkpointed are not counted. When
// another process runs the log over the same Store, Size is the size this
// process last saw; the read methods catch up with the Store by themselves.
func (l *Log) Size() uint64 { return l.size.Load() }

// sizeFor returns the tree size to serve leaf index from. When index is
// beyond the size this process knows and Run is not running here, another
// process may have grown the log: it re-reads the last checkpoint.
func (l *Log) sizeFor(ctx context.Context, index uint64) (uint64, error) {
	n := l.size.Load()
	if index < n || l.running.Load() {
		return n, nil
	}
	cp, err := l.store.LastCheckpoint(ctx)
	if errors.Is(err, ErrNotFound) {
		return n, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read last checkpoint: %w", err)
	}
	for {
		old := l.size.Load()
		if cp.Size <= old {
			return old, nil
		}
		if l.size.CompareAndSwap(old, cp.Size) {
			return cp.Size, nil
		}
	}
}

// Run anchors the log until ctx ends: it reads new leaves from the source,
// writes a checkpoint when MaxLeaves are pending or the oldest has waited
// MaxDelay, anchors it, and follows the anchor's transaction until it has
// Confirmations. While the chain fails it retries with backoff; leaves wait
// in the source meanwhile, and none is lost or moves.
//
// On its first contact with the chain Run checks the contract against the
// Store, and before sending an anchor it asks the contract whether it
// already holds it (sent just before a crash): it adopts such an anchor
// rather than send it twice. An anchor a reorg drops is sent again.
//
// Run returns nil when ctx ends, or an error wrapping ErrForeignAnchor,
// ErrChainMismatch or ErrConflict when the chain or the Store holds what this
// log did not write; other failures are logged and retried. Run must not be
// called twice at once. Each Run starts from what the Store holds, so Logs
// of several processes over one Store may take turns (one at a time: see
// anchor/postgres's Lead).
func (l *Log) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("anchor: log is already running")
	}
	defer l.running.Store(false)
	// Another process may have run the log over the same Store since New or
	// the last Run (gateways sharing one database take turns): start from
	// what the Store holds now, with an empty batch and a fresh chain check.
	if err := l.load(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("anchor: reload log: %w", err)
	}
	l.batch.clear()
	l.checked = false
	l.chainBO.reset()
	l.readBO.reset()
	ticker := time.NewTicker(l.cfg.Poll)
	defer ticker.Stop()
	for {
		if err := l.step(ctx, time.Now()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// step does one round of Run: read leaves, then, unless the chain is backing
// off, follow open anchors and send the next one.
func (l *Log) step(ctx context.Context, now time.Time) error {
	l.read(ctx, now)
	if !l.chainBO.ready(now) {
		return nil
	}
	err := l.advance(ctx, now)
	switch {
	case err == nil:
		l.chainBO.reset()
		return nil
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, ErrForeignAnchor), errors.Is(err, ErrChainMismatch), errors.Is(err, ErrConflict):
		l.logger.ErrorContext(ctx, "anchoring stopped", slog.Any("err", err))
		return err
	}
	wait := l.chainBO.fail(now)
	l.logger.WarnContext(ctx, "anchoring failed; will retry", slog.Any("err", err),
		slog.Int("failures", l.chainBO.failures), slog.Duration("retry_in", wait))
	return nil
}

// read moves new leaves from the source into the batch, up to MaxLeaves.
func (l *Log) read(ctx context.Context, now time.Time) {
	if !l.readBO.ready(now) || l.batch.room() == 0 {
		return
	}
	next := l.tree.size() + uint64(l.batch.len())
	leaves, err := l.leaves(ctx, next, min(l.batch.room(), readChunk))
	if err == nil {
		for i, lf := range leaves {
			if want := next + uint64(i); lf.Index != want {
				err = fmt.Errorf("leaf source returned index %d, want %d", lf.Index, want)
				break
			}
			if len(lf.Data) != 1+sha256.Size || lf.Data[0] != byte(lf.Type) {
				// Its position is fixed: log it as it is, or stall the log.
				l.logger.WarnContext(ctx, "malformed leaf", slog.Uint64("index", lf.Index),
					slog.Int("type", int(lf.Type)), slog.Int("bytes", len(lf.Data)))
			}
			l.batch.add(now, HashLeaf(lf.Data))
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		wait := l.readBO.fail(now)
		l.logger.WarnContext(ctx, "reading leaves failed; will retry", slog.Any("err", err),
			slog.Uint64("index", next), slog.Duration("retry_in", wait))
		return
	}
	l.readBO.reset()
}

// advance does the chain work of one step.
func (l *Log) advance(ctx context.Context, now time.Time) error {
	if !l.checked {
		if err := l.checkChain(ctx); err != nil {
			return err
		}
		l.checked = true
	}
	if err := l.follow(ctx, now); err != nil {
		return err
	}
	for _, a := range l.open {
		if a.Status == StatusSubmitted {
			return nil // one anchor in flight at a time
		}
	}
	if l.cp.Size == l.last.TreeSize { // every checkpoint is anchored
		if !l.batch.ready(now) {
			return nil
		}
		if err := l.checkpoint(ctx, now); err != nil {
			return err
		}
	}
	return l.send(ctx, now)
}

// checkChain compares the contract with the Store before the first anchor is
// sent or followed.
func (l *Log) checkChain(ctx context.Context) error {
	latest, err := l.chain.Latest(ctx)
	if err != nil {
		return fmt.Errorf("get latest anchor: %w", err)
	}
	most := l.last.Seq // the contract may hold the anchor of the last
	if l.cp.Size > l.last.TreeSize {
		most++ // checkpoint, sent just before a crash, unrecorded
	}
	if latest > most {
		return fmt.Errorf("%w: the contract holds %d anchors, this log sent at most %d", ErrForeignAnchor, latest, most)
	}
	confirmed := l.last.Seq
	if len(l.open) > 0 {
		confirmed = l.open[0].Seq - 1
	}
	if confirmed == 0 {
		return nil
	}
	if latest < confirmed {
		return fmt.Errorf("%w: the contract holds %d anchors, but anchor %d was confirmed (wrong chain, or a reorg deeper than %d blocks)",
			ErrChainMismatch, latest, confirmed, l.cfg.Confirmations)
	}
	a, err := l.store.Anchors(ctx, confirmed-1, 1)
	if err != nil {
		return err
	}
	if len(a) != 1 || a[0].Seq != confirmed {
		return fmt.Errorf("anchor %d: %w", confirmed, ErrNotFound)
	}
	held, _, err := l.lookup(ctx, a[0])
	if err != nil {
		return err
	}
	if !held {
		return fmt.Errorf("%w: confirmed anchor %d is not in the contract", ErrChainMismatch, confirmed)
	}
	return nil
}

// checkpoint appends the batch to the tree and writes the new checkpoint.
func (l *Log) checkpoint(ctx context.Context, now time.Time) error {
	t, nodes, err := l.tree.appended(l.batch.hashes)
	if err != nil {
		return err
	}
	cp := Checkpoint{Size: t.size(), Root: t.root(), Time: now.UTC().Truncate(time.Microsecond)}
	if cp.Note, err = l.sign(cp.Size, cp.Root); err != nil {
		return fmt.Errorf("sign checkpoint %d: %w", cp.Size, err)
	}
	if err := l.store.Append(ctx, l.tree.size(), nodes, cp); err != nil {
		return fmt.Errorf("write checkpoint %d: %w", cp.Size, err)
	}
	l.logger.InfoContext(ctx, "checkpoint written", slog.Uint64("tree_size", cp.Size), slog.Int("leaves", l.batch.len()))
	l.tree, l.cp = t, cp
	l.batch.clear()
	l.size.Store(cp.Size)
	return nil
}

// send anchors the last checkpoint at the next sequence number, unless the
// contract holds it already.
func (l *Log) send(ctx context.Context, now time.Time) error {
	prev := l.last.Root
	if l.last.Seq == 0 {
		prev = make(Hex, sha256.Size)
	}
	a := AnchorRecord{
		Seq:      l.last.Seq + 1,
		TreeSize: l.cp.Size,
		Root:     l.cp.Root,
		PrevRoot: prev,
		ChainID:  l.info.ChainID,
		Contract: l.info.Contract,
	}
	// After a crash between Submit and PutAnchor, or a Submit that failed
	// after the transaction left, the contract may hold the anchor already.
	held, inc, err := l.lookup(ctx, a)
	if err != nil {
		return err
	}
	if held {
		if err := l.record(ctx, &a, inc); err != nil {
			return err
		}
		l.logger.InfoContext(ctx, "adopted anchor the contract already holds", slog.Uint64("seq", a.Seq),
			slog.Uint64("tree_size", a.TreeSize), slog.String("tx", a.TxHash.String()))
	} else {
		tx, err := l.chain.Submit(ctx, a.anchor())
		if err != nil {
			return fmt.Errorf("submit anchor %d: %w", a.Seq, err)
		}
		a.Status, a.TxHash, a.Submitted = StatusSubmitted, tx[:], now.UTC().Truncate(time.Microsecond)
		if err := l.store.PutAnchor(ctx, a); err != nil {
			return fmt.Errorf("record anchor %d: %w", a.Seq, err)
		}
		l.logger.InfoContext(ctx, "anchor sent", slog.Uint64("seq", a.Seq),
			slog.Uint64("tree_size", a.TreeSize), slog.String("tx", a.TxHash.String()))
	}
	l.last = a
	if a.Status != StatusConfirmed {
		l.open = append(l.open, a)
	}
	return nil
}

// follow polls the open anchors, in Seq order, and drops the confirmed ones.
func (l *Log) follow(ctx context.Context, now time.Time) error {
	defer func() {
		open := l.open[:0]
		for _, a := range l.open {
			if a.Seq == l.last.Seq {
				l.last = a
			}
			if a.Status != StatusConfirmed {
				open = append(open, a)
			}
		}
		l.open = open
	}()
	for i := range l.open {
		// The contract records anchors in order: one can be (re-)sent only
		// once the one before it is on chain.
		prevOnChain := i == 0 || l.open[i-1].Status != StatusSubmitted
		if err := l.followOne(ctx, now, &l.open[i], prevOnChain); err != nil {
			return err
		}
	}
	return nil
}

// followOne polls one open anchor.
func (l *Log) followOne(ctx context.Context, now time.Time, a *AnchorRecord, prevOnChain bool) error {
	inc, err := l.chain.Inclusion(ctx, [32]byte(a.TxHash))
	mined := err == nil
	if err != nil && !errors.Is(err, ErrNotOnChain) {
		return fmt.Errorf("get inclusion of anchor %d: %w", a.Seq, err)
	}
	switch {
	case mined && a.Status != StatusSubmitted:
		return l.record(ctx, a, inc) // count confirmations
	case !mined && a.Status == StatusSubmitted && !a.Submitted.IsZero() && now.Sub(a.Submitted) < l.cfg.Resubmit:
		return nil // not mined yet
	}
	// The transaction was just mined (did the contract accept it?), or it is
	// not on chain when it should be (dropped, reorged, or stuck): ask the
	// contract, which knows whichever of our transactions recorded it.
	held, cinc, err := l.lookup(ctx, *a)
	if err != nil {
		return err
	}
	if held {
		if a.Status == StatusAnchored && !mined {
			l.logger.WarnContext(ctx, "anchor transaction reorged; the contract still holds the anchor",
				slog.Uint64("seq", a.Seq), slog.String("tx", a.TxHash.String()))
		}
		return l.record(ctx, a, cinc)
	}
	if a.Status != StatusSubmitted {
		l.logger.WarnContext(ctx, "anchor dropped by a reorg; it will be sent again",
			slog.Uint64("seq", a.Seq), slog.String("tx", a.TxHash.String()))
		b := *a
		b.Status, b.Submitted = StatusSubmitted, time.Time{}
		b.BlockNumber, b.BlockHash, b.BlockTime, b.Confirmations = 0, nil, time.Time{}, 0
		if err := l.store.PutAnchor(ctx, b); err != nil {
			return fmt.Errorf("record anchor %d: %w", a.Seq, err)
		}
		*a = b
	}
	if !prevOnChain {
		return nil
	}
	if mined { // and reverted, or the contract's view lags the transaction's
		l.logger.WarnContext(ctx, "anchor transaction mined but not recorded by the contract; sending it again",
			slog.Uint64("seq", a.Seq), slog.String("tx", a.TxHash.String()))
	}
	return l.resend(ctx, now, a)
}

// resend sends an anchor's transaction again.
func (l *Log) resend(ctx context.Context, now time.Time, a *AnchorRecord) error {
	tx, err := l.chain.Submit(ctx, a.anchor())
	if err != nil {
		return fmt.Errorf("submit anchor %d again: %w", a.Seq, err)
	}
	b := *a
	b.Status, b.TxHash, b.Submitted = StatusSubmitted, tx[:], now.UTC().Truncate(time.Microsecond)
	b.BlockNumber, b.BlockHash, b.BlockTime, b.Confirmations = 0, nil, time.Time{}, 0
	if err := l.store.PutAnchor(ctx, b); err != nil {
		return fmt.Errorf("record anchor %d: %w", a.Seq, err)
	}
	*a = b
	l.logger.InfoContext(ctx, "anchor sent again", slog.Uint64("seq", a.Seq),
		slog.Uint64("tree_size", a.TreeSize), slog.String("tx", a.TxHash.String()))
	return nil
}

// lookup asks the contract whether it holds a at a.Seq. It returns
// ErrForeignAnchor if the contract holds another anchor there.
func (l *Log) lookup(ctx context.Context, a AnchorRecord) (bool, Inclusion, error) {
	got, inc, err := l.chain.Lookup(ctx, a.Seq)
	if errors.Is(err, ErrNotOnChain) {
		return false, Inclusion{}, nil
	}
	if err != nil {
		return false, Inclusion{}, fmt.Errorf("look up anchor %d: %w", a.Seq, err)
	}
	if got != a.anchor() {
		return false, Inclusion{}, fmt.Errorf("%w: at seq %d the contract holds tree size %d, root %x; this log's anchor is tree size %d, root %x",
			ErrForeignAnchor, a.Seq, got.TreeSize, got.Root, a.TreeSize, []byte(a.Root))
	}
	return true, inc, nil
}

// record stores where a's transaction is mined, if that changed.
func (l *Log) record(ctx context.Context, a *AnchorRecord, inc Inclusion) error {
	b := *a
	b.TxHash = inc.TxHash[:]
	b.BlockNumber, b.BlockHash, b.BlockTime = inc.BlockNumber, inc.BlockHash[:], inc.BlockTime.UTC().Truncate(time.Microsecond)
	b.Confirmations = inc.Confirmations
	b.Status = StatusAnchored
	if inc.Confirmations >= l.cfg.Confirmations {
		b.Status = StatusConfirmed
	}
	if b.Status == a.Status && b.Confirmations == a.Confirmations && b.BlockNumber == a.BlockNumber &&
		bytes.Equal(b.TxHash, a.TxHash) && bytes.Equal(b.BlockHash, a.BlockHash) {
		return nil
	}
	if err := l.store.PutAnchor(ctx, b); err != nil {
		return fmt.Errorf("record anchor %d: %w", a.Seq, err)
	}
	if a.Status == StatusSubmitted && l.cfg.Metrics != nil {
		l.mined(ctx, b)
	}
	if b.Status != a.Status {
		l.logger.InfoContext(ctx, "anchor "+string(b.Status), slog.Uint64("seq", b.Seq),
			slog.Uint64("tree_size", b.TreeSize), slog.String("tx", b.TxHash.String()),
			slog.Uint64("block", b.BlockNumber), slog.Uint64("confirmations", b.Confirmations))
	}
	*a = b
	return nil
}

// mined tells Metrics of an anchor just seen mined.
func (l *Log) mined(ctx context.Context, a AnchorRecord) {
	var gas uint64
	if gm, ok := l.chain.(gasMeter); ok {
		g, err := gm.GasUsed(ctx, [32]byte(a.TxHash))
		if err != nil {
			l.logger.WarnContext(ctx, "gas used by anchor unknown", slog.Uint64("seq", a.Seq), slog.Any("err", err))
		}
		gas = g
	}
	l.cfg.Metrics.Mined(gas)
}

// LastAnchor returns the newest anchor the Store holds, whichever process
// sent it, or ErrNotFound.
func (l *Log) LastAnchor(ctx context.Context) (AnchorRecord, error) {
	return l.store.LastAnchor(ctx)
}

// anchor returns what the contract records for a.
func (a AnchorRecord) anchor() Anchor {
	out := Anchor{Seq: a.Seq, TreeSize: a.TreeSize}
	copy(out.Root[:], a.Root)
	copy(out.PrevRoot[:], a.PrevRoot)
	return out
}

// Receipt returns the receipt of leaf index: its type and commitment and,
// once an anchor on chain covers it, its audit path to the root of the first
// anchored checkpoint that covers it, and where that root is anchored. Until
// then the receipt is pending and carries no proof (a root no chain holds
// proves nothing). It returns ErrNotFound for an index the source does not
// hold, and ErrLeafMismatch if the source's leaf is not the one logged.
func (l *Log) Receipt(ctx context.Context, index uint64) (Receipt, error) {
	leaves, err := l.leaves(ctx, index, 1)
	if err != nil {
		return Receipt{}, fmt.Errorf("read leaf %d: %w", index, err)
	}
	if len(leaves) == 0 || leaves[0].Index != index {
		return Receipt{}, fmt.Errorf("leaf %d: %w", index, ErrNotFound)
	}
	data := leaves[0].Data
	if len(data) != 1+sha256.Size {
		return Receipt{}, fmt.Errorf("leaf %d is %d bytes, want %d", index, len(data), 1+sha256.Size)
	}
	r := Receipt{
		LeafIndex:      index,
		LeafType:       LeafType(data[0]).String(),
		LeafTypeNumber: data[0],
		Commitment:     bytes.Clone(data[1:]),
		Status:         StatusPending,
	}
	size, err := l.sizeFor(ctx, index)
	if err != nil {
		return Receipt{}, err
	}
	if index >= size {
		return r, nil
	}
	logged, err := l.LeafHash(ctx, index)
	if err != nil {
		return Receipt{}, err
	}
	if !bytes.Equal(logged, HashLeaf(data)) {
		return Receipt{}, fmt.Errorf("leaf %d: %w", index, ErrLeafMismatch)
	}
	a, err := l.store.AnchorCovering(ctx, index)
	if errors.Is(err, ErrNotFound) {
		return r, nil
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("find anchor of leaf %d: %w", index, err)
	}
	if a.Status == StatusSubmitted {
		return r, nil
	}
	path, err := inclusionProof(ctx, l.store, index, a.TreeSize)
	if err != nil {
		return Receipt{}, fmt.Errorf("prove leaf %d in tree of size %d: %w", index, a.TreeSize, err)
	}
	r.Status, r.TreeSize, r.Root = a.Status, a.TreeSize, a.Root
	r.AuditPath = make([]Hex, len(path))
	for i, h := range path {
		r.AuditPath[i] = h
	}
	r.Anchor = &ReceiptAnchor{
		Seq:         a.Seq,
		ChainID:     a.ChainID,
		Contract:    a.Contract,
		TxHash:      a.TxHash,
		BlockNumber: a.BlockNumber,
		BlockHash:   a.BlockHash,
		BlockTime:   a.BlockTime,
	}
	cps, err := l.store.Checkpoints(ctx, a.TreeSize-1, 1)
	if err != nil {
		return Receipt{}, fmt.Errorf("read checkpoint %d: %w", a.TreeSize, err)
	}
	if len(cps) == 0 || cps[0].Size != a.TreeSize {
		return Receipt{}, fmt.Errorf("checkpoint %d: %w", a.TreeSize, ErrNotFound)
	}
	if err := l.signed(ctx, &cps[0]); err != nil {
		return Receipt{}, err
	}
	r.Checkpoint = cps[0].Note
	return r, nil
}

// LeafHash returns the hash the log holds for leaf index, HashLeaf of its
// leaf bytes, or ErrNotFound if the leaf is not in the tree yet. An audit
// compares it with the leaf re-derived from the vault.
func (l *Log) LeafHash(ctx context.Context, index uint64) ([]byte, error) {
	size, err := l.sizeFor(ctx, index)
	if err != nil {
		return nil, err
	}
	if index >= size {
		return nil, fmt.Errorf("leaf %d: %w", index, ErrNotFound)
	}
	h, err := l.store.Nodes(ctx, []compact.NodeID{compact.NewNodeID(0, index)})
	if err != nil {
		return nil, fmt.Errorf("read leaf %d: %w", index, err)
	}
	return h[0], nil
}

// Consistency returns the RFC 6962 consistency proof from the tree of size
// from to the tree of size to; both MUST be checkpoints (ErrNotFound), and
// 0 < from <= to (ErrInvalidRange).
func (l *Log) Consistency(ctx context.Context, from, to uint64) ([][]byte, error) {
	if from == 0 || from > to {
		return nil, fmt.Errorf("%w: from %d, to %d", ErrInvalidRange, from, to)
	}
	for _, size := range []uint64{from, to} {
		cps, err := l.store.Checkpoints(ctx, size-1, 1)
		if err != nil {
			return nil, fmt.Errorf("read checkpoint %d: %w", size, err)
		}
		if len(cps) == 0 || cps[0].Size != size {
			return nil, fmt.Errorf("checkpoint %d: %w", size, ErrNotFound)
		}
	}
	p, err := consistencyProof(ctx, l.store, from, to)
	if err != nil {
		return nil, fmt.Errorf("prove consistency of %d and %d: %w", from, to, err)
	}
	return p, nil
}

// Checkpoints returns up to limit checkpoints with Size > after, by Size,
// each with its signed note (if the Log has a key) and its anchor if it has
// one; none if limit <= 0.
func (l *Log) Checkpoints(ctx context.Context, after uint64, limit int) ([]Checkpoint, error) {
	cps, err := l.store.Checkpoints(ctx, after, limit)
	if err != nil || len(cps) == 0 {
		return cps, err
	}
	for i := range cps {
		if err := l.signed(ctx, &cps[i]); err != nil {
			return nil, err
		}
	}
	first, err := l.store.AnchorCovering(ctx, cps[0].Size-1)
	if errors.Is(err, ErrNotFound) {
		return cps, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read anchors: %w", err)
	}
	anchors, err := l.store.Anchors(ctx, first.Seq-1, len(cps))
	if err != nil {
		return nil, fmt.Errorf("read anchors: %w", err)
	}
	bySize := make(map[uint64]*AnchorRecord, len(anchors))
	for i := range anchors {
		bySize[anchors[i].TreeSize] = &anchors[i]
	}
	for i := range cps {
		cps[i].Anchor = bySize[cps[i].Size]
	}
	return cps, nil
}
