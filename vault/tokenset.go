package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
)

// SortTokens returns tokens sorted and without repeats, as a token set
// holds them. It sorts tokens in place.
func SortTokens(tokens [][]byte) [][]byte {
	slices.SortFunc(tokens, bytes.Compare)
	return slices.CompactFunc(tokens, bytes.Equal)
}

// EncodeTokenSet is how both Stores keep a token set in one column: each
// token as a uvarint length and its bytes. One row per version, appended
// in Seq order, costs a write a fraction of what a row per token in a
// second index by resource did.
func EncodeTokenSet(tokens [][]byte) []byte {
	n := 0
	for _, t := range tokens {
		n += binary.MaxVarintLen16 + len(t)
	}
	out := make([]byte, 0, n)
	for _, t := range tokens {
		out = binary.AppendUvarint(out, uint64(len(t)))
		out = append(out, t...)
	}
	return out
}

// errTokenSet is a stored token set that does not decode: the audit's
// business (a Store reports it, wrapped, rather than guessing).
var errTokenSet = errors.New("token set does not decode")

// DecodeTokenSet reverses EncodeTokenSet.
func DecodeTokenSet(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errTokenSet
		}
		out = append(out, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return out, nil
}
