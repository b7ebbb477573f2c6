package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/plinth-data/plinth"
)

// Config is every setting of Plinth. Each can come from plinth.yaml, an
// environment variable or a flag; a flag beats the environment, which beats
// the file, which beats the default. README.md lists them all.
type Config struct {
	Environment   string `yaml:"environment" env:"PLINTH_ENV" flag:"env" usage:"environment: development, staging or production"`
	Listen        string `yaml:"listen" env:"PLINTH_LISTEN" flag:"listen" usage:"address to serve on"`
	DataDir       string `yaml:"dataDir" env:"PLINTH_DATA_DIR" flag:"data-dir" usage:"folder for embedded data (SQLite file, NATS files, development secrets)"`
	Store         string `yaml:"store" env:"PLINTH_STORE" flag:"store" usage:"store URL: sqlite:///path/file.db or postgres://user@host:5432/db (default sqlite in the data dir)"`
	Domains       string `yaml:"domains" env:"PLINTH_DOMAINS" flag:"domains" usage:"folder of domain specs (default: the shipped residents and contacts domains)"`
	DemoData      bool   `yaml:"demoData" env:"PLINTH_DEMO_DATA" flag:"demo-data" usage:"in development, fill an empty store with dummy demo data"`
	DemoResidents int    `yaml:"demoRecords" env:"PLINTH_DEMO_RECORDS" flag:"demo-records" usage:"how many dummy records of each entity to create as demo data"`
	MaxBodyBytes  int64  `yaml:"maxBodyBytes" env:"PLINTH_MAX_BODY_BYTES" flag:"max-body-bytes" usage:"largest request body accepted, in bytes"`
	LogLevel      string `yaml:"logLevel" env:"PLINTH_LOG_LEVEL" flag:"log-level" usage:"log level: debug, info, warn or error"`
	PublicURL     string `yaml:"publicURL" env:"PLINTH_PUBLIC_URL" flag:"public-url" usage:"base URL clients use, for the OpenAPI servers list (default http://<listen>)"`

	AuthSecret       string        `yaml:"authSecret" env:"PLINTH_AUTH_SECRET" flag:"auth-secret" usage:"HS256 shared secret of user tokens from the organisation's single sign-on"`
	AuthJWKSURL      string        `yaml:"authJWKSURL" env:"PLINTH_AUTH_JWKS_URL" flag:"auth-jwks-url" usage:"URL of a JWKS for RS256/ES256 user tokens"`
	AuthJWKSFile     string        `yaml:"authJWKSFile" env:"PLINTH_AUTH_JWKS_FILE" flag:"auth-jwks-file" usage:"file holding a JWKS for RS256/ES256 user tokens"`
	AuthIssuer       string        `yaml:"authIssuer" env:"PLINTH_AUTH_ISSUER" flag:"auth-issuer" usage:"required iss of user tokens (unchecked when empty)"`
	AuthAudience     string        `yaml:"authAudience" env:"PLINTH_AUTH_AUDIENCE" flag:"auth-audience" usage:"required aud of user tokens (unchecked when empty)"`
	AuthClockSkew    time.Duration `yaml:"authClockSkew" env:"PLINTH_AUTH_CLOCK_SKEW" flag:"auth-clock-skew" usage:"leeway when checking token times"`
	TokenSecret      string        `yaml:"tokenSecret" env:"PLINTH_TOKEN_SECRET" flag:"token-secret" usage:"HS256 key Plinth signs service tokens with (at least 32 bytes)"`
	MaxTokenLifetime time.Duration `yaml:"maxTokenLifetime" env:"PLINTH_MAX_TOKEN_LIFETIME" flag:"max-token-lifetime" usage:"longest lifetime of a service token"`
	AdminGroups      string        `yaml:"adminGroups" env:"PLINTH_ADMIN_GROUPS" flag:"admin-groups" usage:"comma-separated groups allowed on the admin API"`
	AuditorGroups    string        `yaml:"auditorGroups" env:"PLINTH_AUDITOR_GROUPS" flag:"auditor-groups" usage:"comma-separated groups allowed to search the audit trail"`
	Audit            bool          `yaml:"audit" env:"PLINTH_AUDIT" flag:"audit" usage:"audit every request (can be turned off in development only, e.g. for benchmarks)"`
	AuditMirror      string        `yaml:"auditMirror" env:"PLINTH_AUDIT_MIRROR" flag:"audit-mirror" usage:"also write every audit record as a JSON line to this file, or to stdout with \"stdout\""`

	NATSURL    string `yaml:"natsURL" env:"PLINTH_NATS_URL" flag:"nats-url" usage:"external NATS server or cluster for events (default: an embedded server, data in the data dir)"`
	NATSListen string `yaml:"natsListen" env:"PLINTH_NATS_LISTEN" flag:"nats-listen" usage:"let other processes (listeners, plinth events tail) reach the embedded NATS server on this address, e.g. 127.0.0.1:4222"`
	Relay      bool   `yaml:"relay" env:"PLINTH_RELAY" flag:"relay" usage:"run the outbox relay inside serve (turn off when plinth relay runs on its own)"`

	// Policies are access policies loaded into the store on start; set
	// only in plinth.yaml.
	Policies []plinth.AccessPolicy `yaml:"accessPolicies"`
}

func defaultConfig() Config {
	return Config{
		Environment:   "development",
		Listen:        "127.0.0.1:8080",
		DataDir:       "plinth-data",
		DemoData:      true,
		DemoResidents: 3000,
		MaxBodyBytes:  1 << 20,
		LogLevel:      "info",

		AuthClockSkew:    30 * time.Second,
		MaxTokenLifetime: 365 * 24 * time.Hour,
		AdminGroups:      "plinth-admins",
		AuditorGroups:    "plinth-auditors",
		Audit:            true,
		Relay:            true,
	}
}

// configFlag is the flag (and PLINTH_CONFIG the variable) naming the file.
const configFlag = "config"

// storeFlags are the flags of the commands that open the store.
var storeFlags = []string{"data-dir", "store", "domains"}

// with returns the flag names of base followed by more.
func with(base []string, more ...string) []string {
	return append(slices.Clip(base), more...)
}

// addConfigFlags declares on cmd the flags of the Config fields it reads:
// those named in only, or every one (serve) when only is empty. Settings
// without a flag on a command still come from the file and the environment.
func addConfigFlags(cmd *cobra.Command, only ...string) {
	def := defaultConfig()
	v := reflect.ValueOf(def)
	t := v.Type()
	fl := cmd.Flags()
	fl.String(configFlag, "plinth.yaml", "configuration file (PLINTH_CONFIG); a missing default file is fine")
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, usage := f.Tag.Get("flag"), f.Tag.Get("usage")+" ("+f.Tag.Get("env")+")"
		if name == "" || len(only) > 0 && !slices.Contains(only, name) {
			continue
		}
		switch val := v.Field(i).Interface().(type) {
		case time.Duration:
			fl.Duration(name, val, usage)
		case string:
			fl.String(name, val, usage)
		case bool:
			fl.Bool(name, val, usage)
		case int:
			fl.Int(name, val, usage)
		case int64:
			fl.Int64(name, val, usage)
		}
	}
	for _, name := range only {
		if fl.Lookup(name) == nil {
			panic("addConfigFlags: no setting has the flag --" + name)
		}
	}
}

// loadConfig layers defaults, the config file, the environment and the
// flags that were set.
func loadConfig(cmd *cobra.Command) (Config, error) {
	cfg := defaultConfig()
	path, _ := cmd.Flags().GetString(configFlag)
	explicit := cmd.Flags().Changed(configFlag)
	if p := os.Getenv("PLINTH_CONFIG"); p != "" && !explicit {
		path, explicit = p, true
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	case err != nil:
		return cfg, fmt.Errorf("reading configuration: %w", err)
	default:
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
	v := reflect.ValueOf(&cfg).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		field := v.Field(i)
		if f.Tag.Get("flag") == "" {
			continue
		}
		if raw, ok := os.LookupEnv(f.Tag.Get("env")); ok {
			if err := setFromString(field, raw); err != nil {
				return cfg, fmt.Errorf("environment variable %s: %w", f.Tag.Get("env"), err)
			}
		}
		if name := f.Tag.Get("flag"); cmd.Flags().Changed(name) {
			raw := cmd.Flags().Lookup(name).Value.String()
			if err := setFromString(field, raw); err != nil {
				return cfg, fmt.Errorf("flag --%s: %w", name, err)
			}
		}
	}
	return cfg, cfg.check()
}

func setFromString(field reflect.Value, raw string) error {
	if field.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30s or 720h", raw)
		}
		field.SetInt(int64(d))
		return nil
	}
	switch field.Kind() {
	case reflect.String:
		field.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		field.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		field.SetInt(n)
	}
	return nil
}

func (c Config) check() error {
	switch c.Environment {
	case "development", "staging", "production":
	default:
		return fmt.Errorf("environment %q: use development, staging or production", c.Environment)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log level %q: use debug, info, warn or error", c.LogLevel)
	}
	if c.MaxBodyBytes < 1024 {
		return fmt.Errorf("max body bytes %d: must be at least 1024", c.MaxBodyBytes)
	}
	if !c.Audit && c.Environment != plinth.EnvDevelopment {
		return fmt.Errorf("auditing can be turned off only in development, not %s", c.Environment)
	}
	if c.TokenSecret != "" && len(c.TokenSecret) < 32 {
		return fmt.Errorf("token secret: must be at least 32 bytes long")
	}
	if c.AuthSecret != "" && len(c.AuthSecret) < 32 {
		return fmt.Errorf("auth secret: must be at least 32 bytes long")
	}
	if c.MaxTokenLifetime <= 0 {
		return fmt.Errorf("max token lifetime %s: must be positive", c.MaxTokenLifetime)
	}
	for _, p := range c.Policies {
		if p.Domain == "" || !slices.Contains([]string{plinth.EnvDevelopment, plinth.EnvStaging, plinth.EnvProduction}, p.Environment) {
			return fmt.Errorf("accessPolicies: every policy needs a domain and an environment (development, staging or production)")
		}
	}
	if c.DemoResidents < 0 {
		return fmt.Errorf("demo records %d: must not be negative", c.DemoResidents)
	}
	return nil
}

// StoreURL is the store to open: the configured one, or SQLite in the data
// directory.
func (c Config) StoreURL() string {
	if c.Store != "" {
		return c.Store
	}
	return "sqlite://" + filepath.Join(c.DataDir, "plinth.db")
}

// AuthConfigured reports whether user tokens can be verified: a shared
// secret or a JWKS is set.
func (c Config) AuthConfigured() bool {
	return c.AuthSecret != "" || c.AuthJWKSURL != "" || c.AuthJWKSFile != ""
}

// AdminGroupList returns the admin groups.
func (c Config) AdminGroupList() []string { return splitList(c.AdminGroups) }

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
