package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// MasterKeySize is the length in bytes of a master key and of a data key.
const MasterKeySize = 32

// HKDF info labels. Each sub-key has its own label so that a key derived for
// one purpose can never serve another; changing a label changes every key.
const (
	infoKeyWrap    = "fhiranchor/v1 key-wrap"
	infoBlindIndex = "fhiranchor/v1 blind-index"
	infoResponses  = "fhiranchor/v1 responses"
)

// Keyring holds the master key and the sub-keys derived from it: one that
// wraps data keys (AES-256-GCM), one that computes blind-index tokens
// (HMAC-SHA256) and one that seals remembered responses (AES-256-GCM). A
// Keyring is safe for concurrent use.
type Keyring struct {
	wrap      cipher.AEAD // AES-256-GCM, random nonce prepended to the output
	indexKey  []byte
	responses cipher.AEAD // AES-256-GCM, random nonce prepended to the output
	// macs holds HMAC-SHA256 states under indexKey: a Reset state starts
	// from the keyed pads hashed once, where hmac.New hashes them again
	// (a write makes some thirty tokens per resource).
	macs sync.Pool
}

// NewKeyring derives the sub-keys of a 32-byte master key. The Keyring keeps
// no reference to master.
func NewKeyring(master []byte) (*Keyring, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("new keyring: master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	wrapKey, err := hkdf.Key(sha256.New, master, nil, infoKeyWrap, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key-wrap key: %w", err)
	}
	defer clear(wrapKey)
	indexKey, err := hkdf.Key(sha256.New, master, nil, infoBlindIndex, 32)
	if err != nil {
		return nil, fmt.Errorf("derive blind-index key: %w", err)
	}
	wrap, err := newAEAD(wrapKey)
	if err != nil {
		return nil, fmt.Errorf("new key-wrap cipher: %w", err)
	}
	responsesKey, err := hkdf.Key(sha256.New, master, nil, infoResponses, 32)
	if err != nil {
		return nil, fmt.Errorf("derive responses key: %w", err)
	}
	defer clear(responsesKey)
	responses, err := newAEAD(responsesKey)
	if err != nil {
		return nil, fmt.Errorf("new responses cipher: %w", err)
	}
	k := &Keyring{wrap: wrap, indexKey: indexKey, responses: responses}
	k.macs.New = func() any { return &tokenMAC{mac: hmac.New(sha256.New, k.indexKey)} }
	return k, nil
}

// responseAD binds a sealed response to its idempotency key, so a body
// moved to another key fails to open.
func responseAD(key []byte) []byte {
	return append([]byte("fhiranchor/v1|response|"), key...)
}

// sealResponse seals a remembered response body under the responses key:
// nonce || AES-256-GCM(body, aad = its idempotency key).
func (k *Keyring) sealResponse(key, body []byte) []byte {
	return k.responses.Seal(nil, nil, body, responseAD(key))
}

// openResponse reverses sealResponse; it fails if sealed was altered or
// stored under another key.
func (k *Keyring) openResponse(key, sealed []byte) ([]byte, error) {
	return k.responses.Open(nil, nil, sealed, responseAD(key))
}

// NewDataKey returns a fresh random 32-byte data key and its wrapped form,
// nonce || AES-256-GCM(key-wrap key, plain, aad = keyID). Binding keyID as
// additional data means a wrapped key copied to another key id fails to
// unwrap.
func (k *Keyring) NewDataKey(keyID string) (plain, wrapped []byte, err error) {
	plain = make([]byte, MasterKeySize)
	rand.Read(plain) // never returns an error; crashes the program if the OS RNG fails
	wrapped = k.wrap.Seal(nil, nil, plain, []byte(keyID))
	return plain, wrapped, nil
}

// Unwrap opens a data key wrapped by NewDataKey under the same keyID. It fails
// if the master key differs or if wrapped was tampered with or belongs to
// another key id.
func (k *Keyring) Unwrap(keyID string, wrapped []byte) ([]byte, error) {
	plain, err := k.wrap.Open(nil, nil, wrapped, []byte(keyID))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	if len(plain) != MasterKeySize {
		clear(plain)
		return nil, fmt.Errorf("unwrap data key: key is %d bytes, want %d", len(plain), MasterKeySize)
	}
	return plain, nil
}

// Token returns the blind-index token of parts: HMAC-SHA256 under the
// blind-index key over each part as a uvarint length followed by its bytes,
// so that ("ab", "c") and ("a", "bc") give different tokens. Callers put a
// namespace first, e.g. Token("identifier", system, value).
func (k *Keyring) Token(parts ...string) []byte {
	m := k.macs.Get().(*tokenMAC)
	msg := m.msg[:0]
	for _, p := range parts {
		msg = binary.AppendUvarint(msg, uint64(len(p)))
		msg = append(msg, p...)
	}
	m.mac.Reset()
	m.mac.Write(msg)
	sum := m.mac.Sum(make([]byte, 0, sha256.Size))
	// The message holds what was tokenized (an identifier, say): it is
	// cleared, and a long one is not kept.
	clear(msg)
	if cap(msg) <= maxTokenScratch {
		m.msg = msg
	}
	k.macs.Put(m)
	return sum
}

// tokenMAC is an HMAC state under the blind-index key and the scratch a
// token's message is built in, reused together (every write and audit
// makes a dozen tokens a resource).
type tokenMAC struct {
	mac hash.Hash
	msg []byte
}

// maxTokenScratch bounds the message scratch a tokenMAC keeps.
const maxTokenScratch = 1 << 10

// ParseMasterKey decodes a master key written as 64 hexadecimal characters or
// as standard base64 (padded or not) of 32 bytes. Surrounding white space is
// ignored. Errors never contain the key text.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*MasterKeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == MasterKeySize {
			return b, nil
		}
	}
	return nil, errors.New("parse master key: want 64 hex characters or base64 of 32 bytes")
}

// LoadOrCreateMasterKey reads the master key from the file at path, in a
// format ParseMasterKey accepts. If the file does not exist it creates it,
// and its parent directory (mode 0700) if needed, holding 32 random bytes in
// hex and a newline, mode 0600, synced to disk before it returns. It refuses
// a key file that grants any permission to group or others (on systems with
// Unix permissions).
func LoadOrCreateMasterKey(path string) ([]byte, error) {
	key, err := loadMasterKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := createMasterKey(path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	// Read back what is on disk: if another process created the file first,
	// its key wins.
	return loadMasterKey(path)
}

func loadMasterKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open master key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat master key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("master key %s has mode %#o, accessible to group or others; want 0600", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096)) // a key file is under 100 bytes
	if err != nil {
		return nil, fmt.Errorf("read master key %s: %w", path, err)
	}
	defer clear(b)
	key, err := ParseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	return key, nil
}

// createMasterKey writes a new key to a temporary file and links it into
// place, so that no reader ever sees a partly written key and an existing
// key is never replaced (the link fails with fs.ErrExist).
func createMasterKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create master key directory: %w", err)
	}
	key := make([]byte, MasterKeySize)
	rand.Read(key)
	text := []byte(hex.EncodeToString(key) + "\n")
	clear(key)
	defer clear(text)

	tmp, err := os.CreateTemp(dir, ".master-key-*")
	if err != nil {
		return fmt.Errorf("create master key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return fmt.Errorf("create master key: %w", err)
	}
	if _, err := tmp.Write(text); err != nil {
		tmp.Close()
		return fmt.Errorf("write master key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync master key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close master key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("create master key: %w", err)
	}
	// Make the new directory entry durable: data sealed under this key must
	// never outlive the key.
	if d, err := os.Open(dir); err == nil {
		syncErr := d.Sync()
		d.Close()
		if syncErr != nil && runtime.GOOS != "windows" {
			return fmt.Errorf("sync master key directory: %w", syncErr)
		}
	}
	return nil
}

// newAEAD returns AES-256-GCM under key with a random 96-bit nonce that Seal
// prepends to its output and Open takes from its input.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}
