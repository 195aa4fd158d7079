package eth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth"
)

func TestParseHexKey(t *testing.T) {
	key := newKey(t)
	digits := hex.EncodeToString(crypto.FromECDSA(key))
	for _, in := range []string{digits, "0x" + digits, "0X" + strings.ToUpper(digits), "  " + digits + "\n"} {
		got, err := eth.ParseHexKey(in)
		if err != nil {
			t.Fatalf("ParseHexKey: %v", err)
		}
		if !got.Equal(key) {
			t.Errorf("ParseHexKey gave another key")
		}
	}
	secret := "ab" + digits[2:62] // 62 digits
	for name, in := range map[string]string{
		"short":     secret,
		"long":      digits + "00",
		"not hex":   "zz" + digits[2:],
		"zero":      strings.Repeat("0", 64),
		"too large": strings.Repeat("f", 64), // beyond the curve order
		"empty":     "",
	} {
		_, err := eth.ParseHexKey(in)
		if err == nil {
			t.Errorf("ParseHexKey(%s) succeeded", name)
			continue
		}
		if len(in) >= 8 && strings.Contains(err.Error(), in[2:8]) {
			t.Errorf("ParseHexKey(%s) err = %v: echoes the input", name, err)
		}
	}
}

func TestLoadKey(t *testing.T) {
	key := newKey(t)
	ks := keystore.NewKeyStore(t.TempDir(), keystore.LightScryptN, keystore.LightScryptP)
	acct, err := ks.ImportECDSA(key, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	got, err := eth.LoadKey(acct.URL.Path, "correct horse")
	if err != nil {
		t.Fatalf("LoadKey: %v", err)
	}
	if !got.Equal(key) {
		t.Error("LoadKey gave another key")
	}

	_, err = eth.LoadKey(acct.URL.Path, "wrong")
	if err == nil || strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), "correct horse") {
		t.Errorf("LoadKey(wrong passphrase) err = %v, want an error naming no passphrase", err)
	}
	if _, err := eth.LoadKey(acct.URL.Path+".missing", "correct horse"); err == nil {
		t.Error("LoadKey(missing file) succeeded")
	}
}

// A key made by another secp256k1 implementation (internal/testonly makes
// its keys with decred's) signs as go-ethereum's own would; a key on another
// curve is refused.
func TestForeignKey(t *testing.T) {
	priv, err := secp256k1.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := openChain(t, eth.Config{Key: priv.ToECDSA()})
	want, err := crypto.ToECDSA(priv.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Address(); got != crypto.PubkeyToAddress(want.PublicKey).Hex() {
		t.Errorf("Address() = %s, want %s", got, crypto.PubkeyToAddress(want.PublicKey).Hex())
	}
	if _, err := c.Submit(t.Context(), next(anchor.Anchor{})); err != nil {
		t.Errorf("Submit with a decred key: %v", err)
	}

	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eth.New(t.Context(), eth.Config{Key: p256}); err == nil || !strings.Contains(err.Error(), "secp256k1") {
		t.Errorf("New with a P-256 key err = %v, want refused", err)
	}
}
