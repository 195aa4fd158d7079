// Package postgres implements vault.Store on PostgreSQL (15 or later)
// through pgx, for gateways that run as several processes sharing one
// database.
//
// Every Update is one READ COMMITTED transaction on a connection of the
// Store's pool; reads outside Update go straight to the pool and see
// committed state only. Three kinds of lock make the contract hold across
// processes:
//
//   - Leaf Seqs and policy versions come from a one-row counter table,
//     bumped with UPDATE ... RETURNING inside the writing transaction. The
//     row lock lasts until commit or rollback, so transactions that queue
//     leaves do so one after another, from their first leaf to their
//     commit: Seqs commit in order and without gaps, and a reader tailing
//     Leaves or Versions never sees Seq k+1 before k.
//   - Tx.Current takes a transaction-scoped advisory lock on a hash of the
//     resource's type and id before it reads, so that two transactions that
//     read the current version and put the next queue rather than collide.
//   - Tx.Find takes one on a hash of the type and token before it reads, so
//     that of two conditional creates with the same criteria the second
//     waits for the first to commit and then finds its resource.
//
// A transaction that waits on such a lock while holding the counter can
// deadlock with one that holds the lock and waits for the counter;
// PostgreSQL detects it and fails one of them, which the Store reports as
// vault.ErrConflict, as it does unique violations, serialization failures
// and lock timeouts. Callers retry the whole Update.
//
// Advisory locks use PostgreSQL's shared lock table, sized by
// max_locks_per_transaction times max_connections: an Update that reads
// thousands of distinct resources with Tx.Current needs that many entries.
//
// Errors never carry record contents: PostgreSQL's error details, which
// quote the offending values, are dropped.
package postgres
