// Package postgres implements vault.Store on PostgreSQL (15 or later)
// through pgx, for gateways that run as several processes sharing one
// database.
//
// Every Update is one READ COMMITTED transaction on a connection of the
// Store's pool; reads outside Update go straight to the pool and see
// committed state only. Three kinds of lock make the contract hold across
// processes:
//
//   - Every transaction that queues a leaf or stores a policy version first
//     locks the one row of table seq_lock (SELECT ... FOR UPDATE) and holds
//     it until it commits or rolls back. Such writers queue one after
//     another, from their first leaf to their commit, and take the next Seq
//     as the largest committed one plus one: Seqs commit in order and
//     without gaps, a rolled-back transaction uses none up, and a reader
//     tailing Leaves or Versions never sees Seq k+1 before k. (The SQLite
//     backend gets the same from its single writer.) The first Put or
//     AddLeaf of a transaction takes the lock and reads the next Seq in one
//     round trip; from then on the transaction numbers its leaves itself.
//     AddLeaf therefore does not wait for the server: its statements go
//     ahead of a later statement of the transaction (the next Put's, say)
//     or of its commit, in the same round trip, and their failure fails
//     that statement and so the Update. Put does not wait either: a
//     request's versions go to the server together, with its next read or
//     its commit, rather than one round trip each under the Seq lock (which
//     doubled what PostgreSQL ingest cost the gateway). A version found
//     already stored then fails that call, every later one and the Update
//     (vault.ErrConflict), which rolls back.
//   - Tx.Current takes a transaction-scoped advisory lock on a hash of the
//     resource's type and id before it reads, so that two transactions that
//     read the current version and put the next queue rather than collide.
//   - Tx.Find takes one on a hash of the type and token before it reads, so
//     that of two conditional creates with the same criteria the second
//     waits for the first to commit and then finds its resource.
//
// A transaction that waits for such a lock while holding the Seq lock can
// deadlock with one that holds it and waits for the Seq lock, so callers
// should read (Current, Find) before they write. PostgreSQL detects a
// deadlock and fails one of the transactions, which the Store reports as
// vault.ErrConflict, as it does unique violations, serialization failures
// and lock timeouts; callers retry the whole Update.
//
// Advisory locks use PostgreSQL's shared lock table, sized by
// max_locks_per_transaction times max_connections: an Update that reads
// thousands of distinct resources with Tx.Current needs that many entries.
//
// Every statement of an Update runs with a generic plan
// (plan_cache_mode = force_generic_plan, set for the transaction): they look
// rows up by key, and planning Put's statement afresh on each execution,
// which PostgreSQL otherwise does, doubles its cost.
//
// Errors never carry record contents: PostgreSQL's error details, which
// quote the offending values, are dropped.
package postgres
