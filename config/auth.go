package config

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/auth"
)

// Auth is the authorizer's configuration. Every binary builds it here, so
// serve, the CLI and the Lambda authorizer decide alike. In development
// with no authentication configured, tokens are signed with the
// development secrets of the data directory, made the first time (devMode
// true): Plinth never serves anonymously, and tokens stay valid across
// restarts because plinth token issue signs with the secret serve verifies
// with.
func (c Config) Auth() (ac auth.Config, devMode bool, err error) {
	return c.auth(DevSecrets)
}

// AuthReadOnly is Auth for a process that only verifies tokens (the Lambda
// authorizer): it reads the development secrets but never makes them, as
// secrets nobody else holds would verify no token.
func (c Config) AuthReadOnly() (ac auth.Config, devMode bool, err error) {
	return c.auth(existingDevSecrets)
}

func (c Config) auth(devSecrets func(dir string) (Secrets, error)) (ac auth.Config, devMode bool, err error) {
	ac = auth.Config{
		Environment:             c.Environment,
		JWKSURL:                 c.AuthJWKSURL,
		JWKSFile:                c.AuthJWKSFile,
		Issuer:                  c.AuthIssuer,
		Audience:                c.AuthAudience,
		ClockSkew:               c.AuthClockSkew,
		MaxServiceTokenLifetime: c.MaxTokenLifetime,
		AdminGroups:             c.AdminGroupList(),
		AuditorGroups:           c.AuditorGroupList(),
		// CacheTTL has no setting: auth's maximum keeps the revocation
		// bound the README promises.
	}
	if c.AuthSecret != "" {
		ac.UserSecret = []byte(c.AuthSecret)
	}
	ac.PreviousUserSecrets = byteList(c.AuthPreviousSecrets)
	ac.PreviousServiceSecrets = byteList(c.TokenPreviousSecrets)
	if !c.AuthConfigured() {
		if c.Environment != plinth.EnvDevelopment {
			return ac, false, fmt.Errorf("environment %s needs authentication: set authSecret (PLINTH_AUTH_SECRET), authJWKSURL or authJWKSFile", c.Environment)
		}
		devMode = true
		sec, err := devSecrets(c.DataDir)
		if err != nil {
			return ac, false, err
		}
		ac.UserSecret = sec.User
	}
	// Outside development, no tokenSecret means no service tokens.
	if c.TokenSecret != "" || c.Environment == plinth.EnvDevelopment {
		if ac.ServiceSecret, err = c.serviceSecret(devSecrets); err != nil {
			return ac, false, err
		}
	}
	return ac, devMode, nil
}

// ServiceSecret is the key service tokens are signed with: tokenSecret, or
// in development the development secret of the data directory (made the
// first time).
func (c Config) ServiceSecret() ([]byte, error) {
	return c.serviceSecret(DevSecrets)
}

func (c Config) serviceSecret(devSecrets func(dir string) (Secrets, error)) ([]byte, error) {
	if c.TokenSecret != "" {
		return []byte(c.TokenSecret), nil
	}
	if c.Environment != plinth.EnvDevelopment {
		return nil, fmt.Errorf("set tokenSecret (PLINTH_TOKEN_SECRET or --token-secret) to the secret the serving Plinth uses, so it can verify the token")
	}
	sec, err := devSecrets(c.DataDir)
	if err != nil {
		return nil, err
	}
	return sec.Service, nil
}

// DevSecretsFile is the file in the data directory that holds the
// development secrets.
const DevSecretsFile = "development-secrets.json"

// Secrets are the development secrets: one for user tokens, one for
// service tokens (they must differ).
type Secrets struct {
	User    []byte `json:"userSecret"`
	Service []byte `json:"serviceSecret"`
}

// DevSecrets returns the development secrets kept in dir, creating them
// (file mode 0600) the first time. Creation is atomic and never replaces
// a file another process made first.
func DevSecrets(dir string) (Secrets, error) {
	path := filepath.Join(dir, DevSecretsFile)
	sec, err := readSecrets(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return sec, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sec, fmt.Errorf("creating the data folder for the development secrets: %w", err)
	}
	sec = Secrets{User: randomSecret(), Service: randomSecret()}
	data, _ := json.MarshalIndent(sec, "", "  ")
	tmp, err := os.CreateTemp(dir, DevSecretsFile+".*")
	if err != nil {
		return sec, fmt.Errorf("writing the development secrets: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o600) // CreateTemp makes 0600; be explicit
	}
	if werr != nil {
		return sec, fmt.Errorf("writing the development secrets: %w", werr)
	}
	// A hard link fails when the file exists: whoever links first wins,
	// and everyone then reads the same secrets.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return sec, fmt.Errorf("writing the development secrets: %w", err)
	}
	return readSecrets(path)
}

// existingDevSecrets reads the development secrets of dir and says how to
// configure authentication when there are none.
func existingDevSecrets(dir string) (Secrets, error) {
	path := filepath.Join(dir, DevSecretsFile)
	sec, err := readSecrets(path)
	if errors.Is(err, fs.ErrNotExist) {
		return sec, fmt.Errorf("no authentication is configured and there are no development secrets in %s: set PLINTH_AUTH_SECRET (or a JWKS) and PLINTH_TOKEN_SECRET, or ship the file plinth serve made", path)
	}
	return sec, err
}

func readSecrets(path string) (Secrets, error) {
	var sec Secrets
	fi, err := os.Stat(path)
	if err != nil {
		return sec, err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return sec, fmt.Errorf("%s is readable by others (mode %s): run chmod 600 %s, or delete it to make new development secrets", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return sec, err
	}
	if err := json.Unmarshal(data, &sec); err != nil || len(sec.User) < 32 || len(sec.Service) < 32 || bytes.Equal(sec.User, sec.Service) {
		return sec, fmt.Errorf("%s is damaged: delete it, and Plinth makes new development secrets (tokens issued with the old ones stop working)", path)
	}
	return sec, nil
}

func randomSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// byteList is a comma-separated list of secrets as keys; nil when empty.
func byteList(s string) [][]byte {
	var out [][]byte
	for _, part := range SplitList(s) {
		out = append(out, []byte(part))
	}
	return out
}
