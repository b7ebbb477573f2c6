package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// Key rotation without downtime: during a rotation window the authorizer
// accepts tokens signed with the new key and with the previous ones
// (Config.PreviousUserSecrets, Config.PreviousServiceSecrets); once every
// instance has the new key and the old tokens are replaced, the previous
// keys are removed and their tokens are refused.

// errUnknownServiceKID is a service token naming a key id no configured
// service key has.
var errUnknownServiceKID = errors.New("unknown service key id")

// ServiceKeyID is the key id (kid header) of service tokens signed with
// secret: derived from the secret, so no setting has to name it and two
// instances with the same secret agree. It reveals nothing usable about
// the secret (a truncated SHA-256 of a 32-byte random key).
func ServiceKeyID(secret []byte) string {
	sum := sha256.Sum256(append([]byte("plinth service token key\x00"), secret...))
	return hex.EncodeToString(sum[:8])
}

// checkRotation checks the previous keys of a rotation window.
func checkRotation(cfg Config) error {
	for _, s := range cfg.PreviousUserSecrets {
		if len(s) == 0 {
			return errors.New("auth: a previous user secret is empty")
		}
		if bytes.Equal(s, cfg.ServiceSecret) || containsKey(cfg.PreviousServiceSecrets, s) {
			return errors.New("auth: a previous user secret equals a service secret: they must differ, or user tokens could pass as service tokens")
		}
	}
	if len(cfg.PreviousUserSecrets) > 0 && cfg.UserSecret == nil {
		return errors.New("auth: previous user secrets need the current user secret")
	}
	for _, s := range cfg.PreviousServiceSecrets {
		if len(s) == 0 {
			return errors.New("auth: a previous service secret is empty")
		}
		if bytes.Equal(s, cfg.UserSecret) {
			return errors.New("auth: a previous service secret equals the user secret: they must differ")
		}
	}
	if len(cfg.PreviousServiceSecrets) > 0 && cfg.ServiceSecret == nil {
		return errors.New("auth: previous service secrets need the current service secret")
	}
	return nil
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// userSecretKeys is what verifies an HS256 user token: the current secret,
// or the set of it and the previous ones. The SSO's kid (if any) is its
// own naming, so every configured secret is tried, the current first.
func (a *Authorizer) userSecretKeys() any {
	if len(a.cfg.PreviousUserSecrets) == 0 {
		return a.cfg.UserSecret
	}
	set := jwt.VerificationKeySet{Keys: []jwt.VerificationKey{a.cfg.UserSecret}}
	for _, s := range a.cfg.PreviousUserSecrets {
		set.Keys = append(set.Keys, s)
	}
	return set
}

// serviceKey selects the key of a service token by its kid; a token
// without one (signed before tokens carried key ids) may have been signed
// with any of the configured keys.
func (a *Authorizer) serviceKey(t *jwt.Token) (any, error) {
	kid, ok := t.Header["kid"].(string)
	if !ok {
		set := jwt.VerificationKeySet{Keys: []jwt.VerificationKey{a.cfg.ServiceSecret}}
		for _, s := range a.cfg.PreviousServiceSecrets {
			set.Keys = append(set.Keys, s)
		}
		return set, nil
	}
	if kid == ServiceKeyID(a.cfg.ServiceSecret) {
		return a.cfg.ServiceSecret, nil
	}
	for _, s := range a.cfg.PreviousServiceSecrets {
		if kid == ServiceKeyID(s) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w %q", errUnknownServiceKID, kid)
}

// unknownServiceKeyReason is the reason given for a service token whose
// key is not configured (any more).
const unknownServiceKeyReason = "service token signing key (kid) is not known: it was removed after a key rotation, or the token was not issued by this Plinth"
