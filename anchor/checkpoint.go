package anchor

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Sentinel errors of VerifyCheckpoint and VerifyReceiptSigned.
var (
	// ErrMalformedCheckpoint means a signed checkpoint is not a signed note
	// whose text is a checkpoint body (c2sp.org/tlog-checkpoint).
	ErrMalformedCheckpoint = errors.New("anchor: malformed signed checkpoint")
	// ErrCheckpointSignature means no signature of a trusted key verifies on
	// the checkpoint: it was altered, signed by another key, or signed by a
	// key whose name is not the checkpoint's origin.
	ErrCheckpointSignature = errors.New("anchor: checkpoint signature does not verify")
	// ErrCheckpointMismatch means a receipt's tree size or root is not the
	// one its signed checkpoint commits to.
	ErrCheckpointMismatch = errors.New("anchor: receipt does not match its signed checkpoint")
	// ErrUnsignedReceipt means an anchored receipt carries no signed
	// checkpoint, so its root cannot be checked against the log's key.
	ErrUnsignedReceipt = errors.New("anchor: receipt carries no signed checkpoint")
)

// DefaultOrigin is the origin line of a log's checkpoints when none is
// configured. An operator SHOULD configure the log's own, e.g. the host and
// path of its public URL, so that its checkpoints cannot pass for another
// log's.
const DefaultOrigin = "fhiranchor.example/log"

// CheckpointBody is the text of a checkpoint in the C2SP tlog-checkpoint
// format (https://c2sp.org/tlog-checkpoint): the origin line, the tree size
// in decimal, the root hash in standard base64 and optional extension
// lines, each ending with a newline. It holds sizes and hashes only.
type CheckpointBody struct {
	// Origin names the log; it is also the name of the key that signs its
	// checkpoints.
	Origin string
	Size   uint64
	Root   Hex // 32 bytes
	// Extensions are further lines, non-empty and without newlines; they
	// are signed with the rest but this log writes none.
	Extensions []string
}

// Marshal returns b as checkpoint text, or an error if b cannot be written
// as one.
func (b CheckpointBody) Marshal() ([]byte, error) {
	if err := checkLine("origin", b.Origin); err != nil {
		return nil, err
	}
	if len(b.Root) != sha256.Size {
		return nil, fmt.Errorf("checkpoint root is %d bytes, want %d", len(b.Root), sha256.Size)
	}
	for i, e := range b.Extensions {
		if err := checkLine(fmt.Sprintf("extension line %d", i+1), e); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s\n%d\n%s\n", b.Origin, b.Size, base64.StdEncoding.EncodeToString(b.Root))
	for _, e := range b.Extensions {
		buf.WriteString(e)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// checkLine reports whether s can be a line of a checkpoint: non-empty, no
// newline or other control character (a signed note refuses them).
func checkLine(what, s string) error {
	if s == "" {
		return fmt.Errorf("checkpoint %s is empty", what)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("checkpoint %s holds a control character", what)
	}
	return nil
}

// ParseCheckpointBody parses checkpoint text (a note's text, without its
// signatures). It is strict: every line ends with a newline, the size has
// no sign or leading zero, the root is 32 bytes in canonical padded base64,
// and no line is empty. The errors wrap ErrMalformedCheckpoint.
func ParseCheckpointBody(text []byte) (CheckpointBody, error) {
	s := string(text)
	if !strings.HasSuffix(s, "\n") {
		return CheckpointBody{}, fmt.Errorf("%w: text does not end with a newline", ErrMalformedCheckpoint)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) < 3 {
		return CheckpointBody{}, fmt.Errorf("%w: %d lines, want at least 3", ErrMalformedCheckpoint, len(lines))
	}
	for i, l := range lines {
		if err := checkLine(fmt.Sprintf("line %d", i+1), l); err != nil {
			return CheckpointBody{}, fmt.Errorf("%w: %v", ErrMalformedCheckpoint, err)
		}
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return CheckpointBody{}, fmt.Errorf("%w: tree size %q is not a decimal number", ErrMalformedCheckpoint, lines[1])
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != sha256.Size || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return CheckpointBody{}, fmt.Errorf("%w: root is not 32 bytes of base64", ErrMalformedCheckpoint)
	}
	b := CheckpointBody{Origin: lines[0], Size: size, Root: root}
	if len(lines) > 3 {
		b.Extensions = lines[3:]
	}
	return b, nil
}

// SignCheckpoint returns b as a signed note (https://c2sp.org/signed-note)
// signed by s. The signer's name MUST be b's origin, as c2sp.org/tlog-checkpoint
// recommends and VerifyCheckpoint requires.
func SignCheckpoint(b CheckpointBody, s note.Signer) ([]byte, error) {
	if s == nil {
		return nil, errors.New("sign checkpoint: no signer")
	}
	if s.Name() != b.Origin {
		return nil, fmt.Errorf("sign checkpoint: key name %q is not the origin %q", s.Name(), b.Origin)
	}
	text, err := b.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	msg, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return msg, nil
}

// VerifyCheckpoint opens a signed checkpoint and returns its body if a
// signature by one of verifiers verifies on it and that key is named after
// the checkpoint's origin. Signatures by other keys are ignored (a note may
// carry a witness's cosignature too). It returns an error wrapping
// ErrMalformedCheckpoint or ErrCheckpointSignature.
//
// It checks who signed the checkpoint, not what it says: a caller compares
// the size and root with what it verifies against them (VerifyReceiptSigned
// does for a receipt).
func VerifyCheckpoint(msg []byte, verifiers ...note.Verifier) (CheckpointBody, error) {
	if len(verifiers) == 0 {
		return CheckpointBody{}, fmt.Errorf("%w: no verifier key given", ErrCheckpointSignature)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return CheckpointBody{}, fmt.Errorf("%w: signed by no trusted key (%s)", ErrCheckpointSignature, signers(unverified.Note.UnverifiedSigs))
		case errors.As(err, &invalid):
			return CheckpointBody{}, fmt.Errorf("%w: invalid signature by %s+%08x", ErrCheckpointSignature, invalid.Name, invalid.Hash)
		}
		return CheckpointBody{}, fmt.Errorf("%w: %v", ErrMalformedCheckpoint, err)
	}
	b, err := ParseCheckpointBody([]byte(n.Text))
	if err != nil {
		return CheckpointBody{}, err
	}
	for _, s := range n.Sigs {
		if s.Name == b.Origin {
			return b, nil
		}
	}
	return CheckpointBody{}, fmt.Errorf("%w: signed by %s, not by a key of origin %q", ErrCheckpointSignature, signers(n.Sigs), b.Origin)
}

// signers names the keys of sigs as name+hash, for an error message.
func signers(sigs []note.Signature) string {
	if len(sigs) == 0 {
		return "no signature"
	}
	names := make([]string, len(sigs))
	for i, s := range sigs {
		names[i] = fmt.Sprintf("%s+%08x", s.Name, s.Hash)
	}
	return strings.Join(names, ", ")
}

// NewCheckpointKey returns the note signer key (private: "PRIVATE+KEY+name+
// hash+base64") and verifier key ("name+hash+base64") of the Ed25519 key
// with the given 32-byte seed. The gateway derives its default key this way
// from a secret; note.GenerateKey makes a random one.
func NewCheckpointKey(name string, seed []byte) (skey, vkey string, err error) {
	if len(seed) != ed25519.SeedSize {
		return "", "", fmt.Errorf("checkpoint key seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	// note.GenerateKey reads exactly one seed from its reader.
	skey, vkey, err = note.GenerateKey(bytes.NewReader(seed), name)
	if err != nil {
		return "", "", fmt.Errorf("checkpoint key: %w", err)
	}
	if _, err := note.NewSigner(skey); err != nil { // e.g. a name with a space or '+'
		return "", "", fmt.Errorf("checkpoint key %q: %w", name, err)
	}
	return skey, vkey, nil
}

// CheckpointVerifierKey returns the verifier key (public) of a note signer
// key (private). Errors never quote the private key.
func CheckpointVerifierKey(skey string) (string, error) {
	skey = strings.TrimSpace(skey)
	s, err := note.NewSigner(skey)
	if err != nil {
		return "", fmt.Errorf("checkpoint signing key: %w", err)
	}
	// NewSigner checked the format: PRIVATE+KEY+name+hash+base64(alg || seed);
	// the name has no '+', the base64 may.
	parts := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(parts[len(parts)-1])
	if len(parts) != 5 || err != nil || len(raw) != 1+ed25519.SeedSize {
		return "", errors.New("checkpoint signing key: not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return "", fmt.Errorf("checkpoint signing key: %w", err)
	}
	return vkey, nil
}
