package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/vault"
)

// journalLeaf is the leaf the tests journal as number i: every other one
// carries a record (and its salt, subject, actor and time).
func journalLeaf(i int) vault.Leaf {
	l := vault.Leaf{Type: 3, Data: []byte("data " + strconv.Itoa(i)), Ref: "j-" + strconv.Itoa(i)}
	if i%2 == 0 {
		l.Record = []byte(`{"kind":"access-decision","n":` + strconv.Itoa(i) + `}`)
		l.Salt = bytes.Repeat([]byte{byte(i)}, 32)
		l.Subject, l.Actor = "Patient/tok-"+strconv.Itoa(i%7), "ehr"
		l.Time = time.UnixMicro(1_700_000_000_000_000 + int64(i)).UTC()
	}
	return l
}

// addInUpdate adds a leaf of Ref ref in an Update of its own and returns ref.
func addInUpdate(t *testing.T, s *Store, ref string) string {
	t.Helper()
	err := s.Update(context.Background(), func(tx vault.Tx) error {
		_, err := tx.AddLeaf(context.Background(), vault.Leaf{Type: 1, Data: []byte("u"), Ref: ref})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// refsInLog is every leaf's Ref in Seq order, and the leaves by Ref.
func refsInLog(t *testing.T, s *Store) ([]string, map[string]vault.Leaf) {
	t.Helper()
	var refs []string
	byRef := map[string]vault.Leaf{}
	for after := int64(0); ; {
		ls, err := s.Leaves(t.Context(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) == 0 {
			return refs, byRef
		}
		for _, l := range ls {
			if l.Seq != after+1 {
				t.Fatalf("leaf %d follows %d", l.Seq, after)
			}
			full, err := s.Leaf(t.Context(), l.Seq)
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, l.Ref)
			byRef[l.Ref] = full
			after = l.Seq
		}
	}
}

// TestJournalLeavesInOrder: journalled leaves are in the log, whole, for
// every read of it that begins after they were acknowledged, and before
// the leaves of any Update that began after that.
func TestJournalLeavesInOrder(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := t.Context()
	var want []string
	for i := range 50 {
		if i%5 == 4 {
			want = append(want, addInUpdate(t, s, "u-"+strconv.Itoa(i)))
			continue
		}
		ls := []vault.Leaf{journalLeaf(2 * i), journalLeaf(2*i + 1)}
		if ok, err := s.JournalLeaves(ctx, ls); !ok || err != nil {
			t.Fatalf("JournalLeaves: %v, %v", ok, err)
		}
		want = append(want, ls[0].Ref, ls[1].Ref)
		if i%3 == 0 {
			// A read of leaves right away sees them.
			st, err := s.Stats(ctx)
			if err != nil || st.Leaves != int64(len(want)) {
				t.Fatalf("after %d leaves, Stats says %d (%v)", len(want), st.Leaves, err)
			}
		}
	}
	got, byRef := refsInLog(t, s)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("log holds\n%v\nwant\n%v", got, want)
	}
	for i := range 100 {
		if i/2%5 == 4 {
			continue
		}
		w, l := journalLeaf(i), byRef["j-"+strconv.Itoa(i)]
		l.Seq = 0
		if fmt.Sprint(w) != fmt.Sprint(l) {
			t.Errorf("leaf %d comes back as\n%+v\nwant\n%+v", i, l, w)
		}
	}
	// A leaf that claims record fields without a record is refused, like
	// AddLeaf refuses it.
	if ok, err := s.JournalLeaves(ctx, []vault.Leaf{{Type: 3, Data: []byte("x"), Ref: "bad", Subject: "s"}}); ok || err == nil {
		t.Errorf("a leaf with a subject and no record was journalled: %v, %v", ok, err)
	}
}

// TestJournalFoldAfterAmbiguousCommit: a fold whose commit reported an
// error may yet have committed; the leaves it took are still pending in
// memory and the next transaction folds them again. The watermark, read
// in that transaction, must keep them from going into the log twice.
func TestJournalFoldAfterAmbiguousCommit(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := t.Context()
	if ok, err := s.JournalLeaves(ctx, []vault.Leaf{journalLeaf(0), journalLeaf(1)}); !ok || err != nil {
		t.Fatalf("JournalLeaves: %v, %v", ok, err)
	}
	s.journal.mu.Lock()
	taken := slices.Clone(s.journal.pending)
	s.journal.mu.Unlock()
	if err := s.fold(ctx); err != nil {
		t.Fatal(err)
	}
	// As if done had never been told: the same leaves pending again.
	s.journal.mu.Lock()
	s.journal.pending = append(taken, s.journal.pending...)
	s.journal.folded = 0
	s.journal.mu.Unlock()
	addInUpdate(t, s, "after")
	got, _ := refsInLog(t, s)
	if strings.Join(got, " ") != "j-0 j-1 after" {
		t.Fatalf("log holds %v, want j-0 j-1 after", got)
	}
}

// TestJournalOneOwner: a second Store on the same database has no journal
// (the first holds it) and says so; what the first journalled is in the
// second's log once the first folds it.
func TestJournalOneOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	ctx := t.Context()
	a, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if ok, err := b.JournalLeaves(ctx, []vault.Leaf{journalLeaf(1)}); ok || err != nil {
		t.Fatalf("the second Store journalled: %v, %v", ok, err)
	}
	if ok, err := a.JournalLeaves(ctx, []vault.Leaf{journalLeaf(2)}); !ok || err != nil {
		t.Fatalf("the first Store did not journal: %v, %v", ok, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := b.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Leaves == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first Store's folder never folded its leaf")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// abandon stops s as a crash would: the journal's files are closed with
// whatever they hold unfolded, the database without a fold.
func abandon(t *testing.T, s *Store) {
	t.Helper()
	s.closing.Do(func() {
		if s.stopFolder != nil {
			close(s.stopFolder)
			<-s.folderDone
		}
		s.journal.close()
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// journalled writes n leaves (numbered from first, in writes of three) to
// a Store on path and abandons it, so that they are in its journal only.
func journalled(t *testing.T, path string, first, n int) {
	t.Helper()
	s, err := New(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	close(s.stopFolder) // no fold
	<-s.folderDone
	s.stopFolder = nil
	for i := first; i < first+n; i += 3 {
		var ls []vault.Leaf
		for k := i; k < min(i+3, first+n); k++ {
			ls = append(ls, journalLeaf(k))
		}
		if ok, err := s.JournalLeaves(t.Context(), ls); !ok || err != nil {
			t.Fatalf("JournalLeaves: %v, %v", ok, err)
		}
	}
	abandon(t, s)
}

// TestJournalTornAndDamaged: a write torn by a crash (any prefix of its
// bytes reached the disk, or any of its pages) loses that write alone; a
// damaged record that an acknowledged write followed stops the Store from
// opening instead of losing it quietly.
func TestJournalTornAndDamaged(t *testing.T) {
	// recordOffsets is where each record of file 0 starts.
	recordOffsets := func(path string) []int64 {
		f, err := os.Open(path + "-leafq-0")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recs, _, _, err := readJournal(f, 0)
		if err != nil {
			t.Fatal(err)
		}
		var offs []int64
		var off int64
		for _, r := range recs {
			offs = append(offs, off)
			var b []byte
			off += int64(recordHead + len(encodeLeaf(b, &r.leaf)))
		}
		return append(offs, off)
	}
	garble := func(path string, off int64) {
		f, err := os.OpenFile(path+"-leafq-0", os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x5a
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	open := func(path string) ([]string, error) {
		s, err := New(t.Context(), Config{Path: path})
		if err != nil {
			return nil, err
		}
		defer s.Close()
		refs, _ := refsInLog(t, s)
		return refs, nil
	}
	refs := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, "j-"+strconv.Itoa(i))
		}
		return out
	}

	t.Run("torn last write", func(t *testing.T) {
		// The last write (records 9, 10, 11) torn at its first, second
		// and third record: what precedes the tear is kept (a record of
		// a write never acknowledged, which is allowed), the rest not.
		for k := range 3 {
			path := filepath.Join(t.TempDir(), "vault.db")
			journalled(t, path, 0, 12)
			garble(path, recordOffsets(path)[9+k]+recordHead+1)
			got, err := open(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, " ") != strings.Join(refs(0, 9+k), " ") {
				t.Fatalf("record %d torn: log holds %v", 9+k, got)
			}
			// The numbers of the torn write are not reused: leaves
			// journalled now are found after another crash.
			journalled(t, path, 100, 4)
			if got, err = open(path); err != nil || strings.Join(got, " ") != strings.Join(append(refs(0, 9+k), refs(100, 104)...), " ") {
				t.Fatalf("after a torn write and more leaves: %v, %v", got, err)
			}
		}
	})
	t.Run("damaged before an acknowledged write", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "vault.db")
		journalled(t, path, 0, 12)
		garble(path, recordOffsets(path)[4]+recordHead+1) // of the second write; two more follow
		if _, err := open(path); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("a damaged record before acknowledged ones opened: %v", err)
		}
	})
	t.Run("no tail", func(t *testing.T) {
		// Nothing past the records is read as one: a file whose records
		// end exactly at its end.
		path := filepath.Join(t.TempDir(), "vault.db")
		journalled(t, path, 0, 6)
		end := recordOffsets(path)[6]
		if err := os.Truncate(path+"-leafq-0", end); err != nil {
			t.Fatal(err)
		}
		if got, err := open(path); err != nil || strings.Join(got, " ") != strings.Join(refs(0, 6), " ") {
			t.Fatalf("log holds %v, %v", got, err)
		}
	})
}

// TestJournalCrash kills a process that journals leaves and adds others in
// Updates, at random moments, again and again on one database, and checks
// what it acknowledged: every leaf it was told is durable is in the log
// once, no leaf is there twice, and the log's order is the order in which
// they were acknowledged (one goroutine: each write began after the one
// before returned). The folder, the switch between the journal's two files
// and the reuse of each from its start all happen between the kills.
func TestJournalCrash(t *testing.T) {
	if path := os.Getenv("FHIRANCHOR_JOURNAL_CRASH_DB"); path != "" {
		journalUntilKilled(t, path)
		return
	}
	path := filepath.Join(t.TempDir(), "vault.db")
	var acked []string
	next := 0
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestJournalCrash$")
		cmd.Env = append(os.Environ(), "FHIRANCHOR_JOURNAL_CRASH_DB="+path, "FHIRANCHOR_JOURNAL_CRASH_FROM="+strconv.Itoa(next))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 200 + rand.IntN(1500)
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "ack ") {
				continue
			}
			acked = append(acked, strings.Fields(line)[1:]...)
			if n++; n == killAt {
				cmd.Process.Kill()
			}
		}
		cmd.Wait()
		if n < killAt {
			t.Fatalf("round %d: the helper stopped after %d writes", round, n)
		}
		next += 100_000
	}
	s, err := New(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, _ := refsInLog(t, s)
	pos := map[string]int{}
	for i, r := range got {
		if _, dup := pos[r]; dup {
			t.Fatalf("leaf %s is in the log twice", r)
		}
		pos[r] = i
	}
	last := -1
	for _, r := range acked {
		p, ok := pos[r]
		if !ok {
			t.Fatalf("leaf %s was acknowledged and is not in the log", r)
		}
		if p <= last {
			t.Fatalf("leaf %s is in the log before one acknowledged before it", r)
		}
		last = p
	}
	t.Logf("%d leaves acknowledged in 6 runs killed at random, %d in the log", len(acked), len(got))
}

// journalUntilKilled is TestJournalCrash's helper process: it writes until
// it is killed, and prints each write's leaves once they are durable.
func journalUntilKilled(t *testing.T, path string) {
	from, _ := strconv.Atoi(os.Getenv("FHIRANCHOR_JOURNAL_CRASH_FROM"))
	s, err := New(context.Background(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := bufio.NewWriter(os.Stdout)
	for i := from; ; i++ {
		var refs []string
		if i%7 == 3 {
			refs = append(refs, addInUpdate(t, s, "u-"+strconv.Itoa(i)))
		} else {
			var ls []vault.Leaf
			for k := range 1 + i%3 {
				l := journalLeaf(i*3 + k)
				l.Ref = "j-" + strconv.Itoa(i) + "-" + strconv.Itoa(k)
				ls = append(ls, l)
				refs = append(refs, l.Ref)
			}
			if ok, err := s.JournalLeaves(ctx, ls); !ok || err != nil {
				t.Fatalf("JournalLeaves: %v, %v", ok, err)
			}
		}
		fmt.Fprintln(w, "ack", strings.Join(refs, " "))
		w.Flush()
		if i%50 == 0 {
			// Now and then a pause longer than the folder's delay.
			time.Sleep(foldDelay + 5*time.Millisecond)
		}
	}
}

// FuzzReadJournal: whatever a journal file holds, reading it neither
// panics nor returns a record that is not what its bytes say.
func FuzzReadJournal(f *testing.F) {
	var b []byte
	for i := range 4 {
		l := journalLeaf(i)
		start := len(b)
		b = append(b, make([]byte, recordHead)...)
		b = encodeLeaf(b, &l)
		size := len(b) - start - recordHead
		putHead(b[start:], size, uint64(i+1), 1)
	}
	f.Add(b)
	f.Add(b[:len(b)-3])
	f.Add(append(bytes.Clone(b[:40]), b...))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "j")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		recs, end, _, err := readJournal(fh, 0)
		if err != nil {
			return
		}
		var again []byte
		for _, r := range recs {
			start := len(again)
			again = append(again, make([]byte, recordHead)...)
			again = encodeLeaf(again, &r.leaf)
			putHead(again[start:], len(again)-start-recordHead, r.n, r.first)
		}
		if int64(len(again)) != end || !bytes.Equal(again, data[:end]) {
			t.Fatalf("records read back as %x, the file's first %d bytes are %x", again, end, data[:end])
		}
	})
}
