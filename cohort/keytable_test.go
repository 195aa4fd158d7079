package cohort

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestKeyTable holds the table to a map through random puts and removes,
// with resource numbers reused as the index reuses them; a put of a key
// present already is refused and changes nothing.
func TestKeyTable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tab := newKeyTable(0)
	var keys []string
	var free []uint32
	oracle := map[string]uint32{}
	for step := range 200_000 {
		k := "Observation/" + strconv.Itoa(r.IntN(5000))
		if rn, ok := oracle[k]; ok && r.IntN(2) == 0 {
			tab.remove(k, keys)
			keys[rn] = ""
			free = append(free, rn)
			delete(oracle, k)
		} else if !ok {
			var rn uint32
			if n := len(free); n > 0 {
				rn, free = free[n-1], free[:n-1]
				keys[rn] = k
			} else {
				rn = uint32(len(keys))
				keys = append(keys, k)
			}
			if !tab.put(k, rn, keys) {
				t.Fatalf("step %d: put(%s) of a new key refused", step, k)
			}
			oracle[k] = rn
		} else if tab.put(k, uint32(len(keys)), keys) {
			t.Fatalf("step %d: put(%s) of a present key accepted", step, k)
		}
		if step%997 == 0 {
			for i := range 5000 {
				k := "Observation/" + strconv.Itoa(i)
				got, ok := tab.get(k, keys)
				want, wok := oracle[k]
				if ok != wok || got != want {
					t.Fatalf("step %d: get(%s) = %d, %v; want %d, %v", step, k, got, ok, want, wok)
				}
			}
			if tab.live != len(oracle) {
				t.Fatalf("step %d: %d live, want %d", step, tab.live, len(oracle))
			}
		}
	}
	if len(tab.slots) > 16*1024 {
		t.Errorf("%d slots for at most 5000 keys: tombstones are not cleared", len(tab.slots))
	}
}
