package eth

import (
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/crypto"
)

// LoadKey decrypts the go-ethereum keystore (Web3 Secret Storage) JSON file
// at path with passphrase.
func LoadKey(path, passphrase string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keystore file: %w", err)
	}
	k, err := keystore.DecryptKey(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("decrypt keystore file %s: %w", path, err)
	}
	return k.PrivateKey, nil
}

// ParseHexKey parses a secp256k1 private key written as 64 hex digits, with
// or without a 0x prefix. Its errors never echo the input.
func ParseHexKey(s string) (*ecdsa.PrivateKey, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(s) != 64 {
		return nil, errors.New("parse hex key: want 64 hex digits")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("parse hex key: not hexadecimal")
	}
	k, err := crypto.ToECDSA(b)
	if err != nil {
		return nil, errors.New("parse hex key: not a valid secp256k1 private key")
	}
	return k, nil
}

// normalizeKey returns key on go-ethereum's secp256k1 implementation. The
// caller's key may carry another library's secp256k1 curve value (decred's,
// say); a key on another curve is refused.
func normalizeKey(key *ecdsa.PrivateKey) (*ecdsa.PrivateKey, error) {
	if key == nil || key.D == nil || key.Curve == nil {
		return nil, errors.New("no key")
	}
	p, s := key.Curve.Params(), crypto.S256().Params()
	if p == nil || p.P.Cmp(s.P) != 0 || p.N.Cmp(s.N) != 0 || p.Gx.Cmp(s.Gx) != 0 || p.Gy.Cmp(s.Gy) != 0 {
		return nil, errors.New("not a secp256k1 key")
	}
	if key.D.Sign() <= 0 || key.D.BitLen() > 256 {
		return nil, errors.New("not a valid secp256k1 private key")
	}
	k, err := crypto.ToECDSA(key.D.FillBytes(make([]byte, 32)))
	if err != nil {
		return nil, errors.New("not a valid secp256k1 private key")
	}
	return k, nil
}

// loadOrCreateDevKey returns the simulated chain's own anchorer key, kept in
// dir (generated on first use); with no dir, a fresh one. The key controls
// nothing but the in-process chain.
func loadOrCreateDevKey(dir string) (*ecdsa.PrivateKey, error) {
	if dir == "" {
		return crypto.GenerateKey()
	}
	path := filepath.Join(dir, devKeyFile)
	if data, err := os.ReadFile(path); err == nil {
		k, err := ParseHexKey(string(data))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read simulated chain key: %w", err)
	}
	k, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, []byte(hex.EncodeToString(crypto.FromECDSA(k))+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("store simulated chain key: %w", err)
	}
	return k, nil
}
