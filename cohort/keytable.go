package cohort

import "hash/maphash"

// keyTable finds a resource's number by its key. It is an open-addressing
// hash table of resource numbers whose keys live in Index.resKeys, so a
// resource costs a 4-byte slot (at most 3/4 full) instead of a map entry
// holding a second string header and its own overhead: about 30 bytes less
// per resource, a sixth of the index.
type keyTable struct {
	seed  maphash.Seed
	slots []uint32 // resource number + 1; 0 empty; tombstone a deleted one
	used  int      // slots not empty (live and tombstones)
	live  int
}

const tombstone = ^uint32(0)

func newKeyTable(n int) keyTable {
	size := 16
	for size*3/4 < n {
		size *= 2
	}
	return keyTable{seed: maphash.MakeSeed(), slots: make([]uint32, size)}
}

// find returns the slot holding key, or the slot where it would go.
func (t *keyTable) find(key string, keys []string) (slot int, found bool) {
	mask := len(t.slots) - 1
	i := int(maphash.String(t.seed, key)) & mask
	free := -1
	for {
		switch s := t.slots[i]; {
		case s == 0:
			if free >= 0 {
				return free, false
			}
			return i, false
		case s == tombstone:
			if free < 0 {
				free = i
			}
		case keys[s-1] == key:
			return i, true
		}
		i = (i + 1) & mask
	}
}

func (t *keyTable) get(key string, keys []string) (uint32, bool) {
	i, ok := t.find(key, keys)
	if !ok {
		return 0, false
	}
	return t.slots[i] - 1, true
}

// put adds key as resource rn and reports true, or reports false and
// changes nothing when key is present already. keys need not hold rn yet:
// one lookup both checks and places it.
func (t *keyTable) put(key string, rn uint32, keys []string) bool {
	if (t.used+1)*4 > len(t.slots)*3 {
		t.grow(keys)
	}
	i, found := t.find(key, keys)
	if found {
		return false
	}
	if t.slots[i] == 0 {
		t.used++
	}
	t.slots[i] = rn + 1
	t.live++
	return true
}

// remove deletes key, if present; keys must still hold it.
func (t *keyTable) remove(key string, keys []string) {
	if i, ok := t.find(key, keys); ok {
		t.slots[i] = tombstone
		t.live--
	}
}

// grow rehashes into a table sized for the live keys (twice as many slots
// when it is mostly live, the same when tombstones filled it).
func (t *keyTable) grow(keys []string) {
	old := t.slots
	size := len(old)
	if t.live*2 >= size*3/4 {
		size *= 2
	}
	t.slots = make([]uint32, size)
	t.used = 0
	mask := size - 1
	for _, s := range old {
		if s == 0 || s == tombstone {
			continue
		}
		i := int(maphash.String(t.seed, keys[s-1])) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
		t.used++
	}
}
