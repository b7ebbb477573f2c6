package hub

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/plinth-data/plinth"
)

// NewKey makes an Ed25519 key pair: the private key as PKCS #8 PEM (it
// stays with its owner) and the public key in the contract's form.
func NewKey() (privatePEM []byte, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), EncodePublicKey(pub), nil
}

// ParsePrivateKey reads a PKCS #8 PEM Ed25519 private key (as NewKey,
// openssl genpkey -algorithm ed25519, or WebCrypto's pkcs8 export write).
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" (PKCS #8) file")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the private key does not parse: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the private key is a %T, not Ed25519", k)
	}
	return priv, nil
}

func findDomain(ds []*plinth.Domain, name string) *plinth.Domain {
	for _, d := range ds {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func findEntity(d *plinth.Domain, plural string) *plinth.Entity {
	for _, e := range d.Entities {
		if e.Plural == plural {
			return e
		}
	}
	return nil
}

// hasSpecial reports whether any field, nested ones too, is special category.
func hasSpecial(fs []*plinth.Field) bool {
	for _, f := range fs {
		if f.PII == plinth.PIISpecial || hasSpecial(f.Fields) || (f.Items != nil && hasSpecial([]*plinth.Field{f.Items})) {
			return true
		}
	}
	return false
}
