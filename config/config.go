// Package config is Plinth's configuration: every setting, its default,
// and how it is read from plinth.yaml, the environment (PLINTH_*) and
// command-line flags. Every binary (plinth and plinth-authorizer) loads it
// here, so the same file and variables mean the same thing everywhere, and
// builds the authorizer's configuration with Config.Auth.
package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

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
	MemoryLimit   int64  `yaml:"memoryLimit" env:"PLINTH_MEMORY_LIMIT" flag:"memory-limit" usage:"soft limit of serve's Go memory in bytes: near it the garbage collector runs sooner instead of letting the heap double (0: none; GOMEMLIMIT, when set, wins over the default)"`

	ReportMaxDuration  time.Duration `yaml:"reportMaxDuration" env:"PLINTH_REPORT_MAX_DURATION" flag:"report-max-duration" usage:"longest a report may stream (its read snapshot holds back vacuum and WAL checkpoints meanwhile)"`
	ReportIdleTimeout  time.Duration `yaml:"reportIdleTimeout" env:"PLINTH_REPORT_IDLE_TIMEOUT" flag:"report-idle-timeout" usage:"drop a report's client that reads nothing for this long"`
	TombstoneRetention time.Duration `yaml:"tombstoneRetention" env:"PLINTH_TOMBSTONE_RETENTION" flag:"tombstone-retention" usage:"how long deletions are kept for incremental reports"`

	AuthSecret           string        `yaml:"authSecret" env:"PLINTH_AUTH_SECRET" flag:"auth-secret" usage:"HS256 shared secret of user tokens from the organisation's single sign-on"`
	AuthJWKSURL          string        `yaml:"authJWKSURL" env:"PLINTH_AUTH_JWKS_URL" flag:"auth-jwks-url" usage:"URL of a JWKS for RS256/ES256 user tokens"`
	AuthJWKSFile         string        `yaml:"authJWKSFile" env:"PLINTH_AUTH_JWKS_FILE" flag:"auth-jwks-file" usage:"file holding a JWKS for RS256/ES256 user tokens"`
	AuthIssuer           string        `yaml:"authIssuer" env:"PLINTH_AUTH_ISSUER" flag:"auth-issuer" usage:"required iss of user tokens (unchecked when empty)"`
	AuthAudience         string        `yaml:"authAudience" env:"PLINTH_AUTH_AUDIENCE" flag:"auth-audience" usage:"required aud of user tokens (unchecked when empty)"`
	AuthClockSkew        time.Duration `yaml:"authClockSkew" env:"PLINTH_AUTH_CLOCK_SKEW" flag:"auth-clock-skew" usage:"leeway when checking token times"`
	TokenSecret          string        `yaml:"tokenSecret" env:"PLINTH_TOKEN_SECRET" flag:"token-secret" usage:"HS256 key Plinth signs service tokens with (at least 32 bytes)"`
	AuthPreviousSecrets  string        `yaml:"authPreviousSecrets" env:"PLINTH_AUTH_PREVIOUS_SECRETS" flag:"auth-previous-secrets" usage:"comma-separated earlier HS256 user-token secrets still accepted during a key rotation window"`
	TokenPreviousSecrets string        `yaml:"tokenPreviousSecrets" env:"PLINTH_TOKEN_PREVIOUS_SECRETS" flag:"token-previous-secrets" usage:"comma-separated earlier service-token keys still accepted (by kid) during a key rotation window"`
	MaxTokenLifetime     time.Duration `yaml:"maxTokenLifetime" env:"PLINTH_MAX_TOKEN_LIFETIME" flag:"max-token-lifetime" usage:"longest lifetime of a service token"`
	AdminGroups          string        `yaml:"adminGroups" env:"PLINTH_ADMIN_GROUPS" flag:"admin-groups" usage:"comma-separated groups allowed on the admin API"`
	AuditorGroups        string        `yaml:"auditorGroups" env:"PLINTH_AUDITOR_GROUPS" flag:"auditor-groups" usage:"comma-separated groups allowed to search the audit trail"`
	CloudAccounts        string        `yaml:"cloudAccounts" env:"PLINTH_CLOUD_ACCOUNTS" flag:"cloud-accounts" usage:"AWS account ids of the domains' owner.cloudAccount labels, label=123456789012 comma-separated: the Lambda authorizer denies requests to an API deployed in another account"`
	Audit                bool          `yaml:"audit" env:"PLINTH_AUDIT" flag:"audit" usage:"audit every request (can be turned off in development only, e.g. for benchmarks)"`
	AuditMirror          string        `yaml:"auditMirror" env:"PLINTH_AUDIT_MIRROR" flag:"audit-mirror" usage:"also write every audit record as a JSON line to this file, or to stdout with \"stdout\""`

	NATSURL    string `yaml:"natsURL" env:"PLINTH_NATS_URL" flag:"nats-url" usage:"external NATS server or cluster for events (default: an embedded server, data in the data dir)"`
	EventBus   string `yaml:"eventBus" env:"PLINTH_EVENT_BUS" flag:"event-bus" usage:"publish change events to AWS SNS FIFO topics instead of NATS: sns://REGION/ACCOUNT[?prefix=plinth-] (one topic per domain, {prefix}{env}-{domain}.fifo)"`
	NATSListen string `yaml:"natsListen" env:"PLINTH_NATS_LISTEN" flag:"nats-listen" usage:"let other processes (listeners, plinth events tail) reach the embedded NATS server on this address, e.g. 127.0.0.1:4222"`
	Relay      bool   `yaml:"relay" env:"PLINTH_RELAY" flag:"relay" usage:"run the outbox relay inside serve (turn off when plinth relay runs on its own)"`

	OTelEndpoint string `yaml:"otelEndpoint" env:"PLINTH_OTEL_ENDPOINT" flag:"otel-endpoint" usage:"send OpenTelemetry traces (HTTP requests, their store calls, the relay's publishes) over OTLP/HTTP to this collector, e.g. http://127.0.0.1:4318 (default: no tracing)"`

	StreamMaxAge    time.Duration `yaml:"streamMaxAge" env:"PLINTH_STREAM_MAX_AGE" flag:"stream-max-age" usage:"JetStream drops a domain's events older than this (0: no age limit); applied to existing streams on start"`
	StreamMaxBytes  int64         `yaml:"streamMaxBytes" env:"PLINTH_STREAM_MAX_BYTES" flag:"stream-max-bytes" usage:"largest size of a domain's event stream in bytes, the oldest events dropped first (0: no size limit); applied to existing streams on start"`
	StreamReplicas  int           `yaml:"streamReplicas" env:"PLINTH_STREAM_REPLICAS" flag:"stream-replicas" usage:"servers of a NATS cluster that keep each domain's stream (3 survives losing one; 0: 1 for new streams, existing ones keep theirs); applied to existing streams on start"`
	OutboxRetention time.Duration `yaml:"outboxRetention" env:"PLINTH_OUTBOX_RETENTION" flag:"outbox-retention" usage:"the relay deletes published outbox entries older than this (unpublished ones never)"`

	Lake              string        `yaml:"lake" env:"PLINTH_LAKE" flag:"lake" usage:"data lake root: a folder or s3://bucket/prefix (default <data dir>/lake)"`
	LakeServe         bool          `yaml:"lakeServe" env:"PLINTH_LAKE_SERVE" flag:"lake-serve" usage:"land change events in the lake inside serve (default: on in development, off elsewhere, where plinth lake runs on its own)"`
	LakeFlushInterval time.Duration `yaml:"lakeFlushInterval" env:"PLINTH_LAKE_FLUSH_INTERVAL" flag:"lake-flush-interval" usage:"land a domain's buffered events at the latest this long after the first came"`
	LakeSnapshotDaily bool          `yaml:"lakeSnapshotDaily" env:"PLINTH_LAKE_SNAPSHOT_DAILY" flag:"lake-snapshot-daily" usage:"with lakeServe, serve writes each day's snapshot of every entity to the lake (as plinth lake snapshot)"`
	LakeSpecial       string        `yaml:"lakeSpecialDomains" env:"PLINTH_LAKE_SPECIAL_DOMAINS" flag:"lake-special-domains" usage:"comma-separated domains whose special-category fields the lake keeps, in a separate dataset under _special/ (default none: they stay out)"`
	AuditHotRetention time.Duration `yaml:"auditHotRetention" env:"PLINTH_AUDIT_HOT_RETENTION" flag:"audit-hot-retention" usage:"plinth lake audit trims audit records older than this from the store once they are archived in the lake (default 0: keep them all)"`
	LakeS3Endpoint    string        `yaml:"lakeS3Endpoint" env:"PLINTH_LAKE_S3_ENDPOINT" flag:"lake-s3-endpoint" usage:"endpoint URL of an S3-compatible store for an s3:// lake (path-style addressing); credentials and region come from the usual AWS settings"`

	HubOIDCIssuer       string `yaml:"hubOIDCIssuer" env:"PLINTH_HUB_OIDC_ISSUER" flag:"hub-oidc-issuer" usage:"OpenID Connect issuer URL the Developer Hub signs users in with (authorization code with PKCE); empty: sign-in by pasted user token only"`
	HubOIDCClientID     string `yaml:"hubOIDCClientID" env:"PLINTH_HUB_OIDC_CLIENT_ID" flag:"hub-oidc-client-id" usage:"the Hub's client ID at the OpenID Connect provider (its redirect URI: <publicURL>/hub/signin/callback)"`
	HubOIDCClientSecret string `yaml:"hubOIDCClientSecret" env:"PLINTH_HUB_OIDC_CLIENT_SECRET" flag:"hub-oidc-client-secret" usage:"the Hub's client secret at the provider (empty for a public client)"`
	HubOIDCScopes       string `yaml:"hubOIDCScopes" env:"PLINTH_HUB_OIDC_SCOPES" flag:"hub-oidc-scopes" usage:"comma-separated scopes to ask for beyond openid, profile and email (e.g. groups)"`
	HubOIDCGroupsClaim  string `yaml:"hubOIDCGroupsClaim" env:"PLINTH_HUB_OIDC_GROUPS_CLAIM" flag:"hub-oidc-groups-claim" usage:"claim of the ID token or userinfo that lists the user's groups"`

	HubDeployments string `yaml:"hubDeployments" env:"PLINTH_HUB_DEPLOYMENTS" flag:"hub-deployments" usage:"comma-separated base URLs of other Plinth deployments whose APIs the Developer Hub's catalogue lists"`

	SupportLogDir string `yaml:"supportLogDir" env:"PLINTH_SUPPORT_LOG_DIR" flag:"pg-log-dir" usage:"folder of PostgreSQL's CSV server log (its log_directory, as this machine sees it), for plinth support log; default: ask the server and use it when readable here"`

	// Stores maps domain names to store URLs, for domains that use
	// another engine than Store (stores: {contacts: dynamodb://eu-west-2});
	// set only in plinth.yaml.
	Stores map[string]string `yaml:"stores"`

	// HubExternalAPIs are APIs not served by Plinth that the Developer
	// Hub's catalogue lists; set only in plinth.yaml.
	HubExternalAPIs []HubExternalAPI `yaml:"hubExternalAPIs"`

	// Policies are access policies loaded into the store on start; set
	// only in plinth.yaml.
	Policies []plinth.AccessPolicy `yaml:"accessPolicies"`

	// set holds the yaml names of the settings the file, the environment
	// or a flag gave, for callers that must not fall back to a default
	// (see IsSet).
	set map[string]bool
}

// DefaultMemoryLimit is serve's soft memory limit unless configured: the
// Go runtime's memory (heap, stacks, its own), not the executable's pages.
// Under writes serve keeps 40–55 MiB live (the embedded JetStream's 8 MiB
// block buffers, the lake's open row groups in development); without a
// limit the heap grows to twice that before each collection, and serve
// raises this default while the live heap needs room (guardHeadroom).
// Reads keep about 8 MiB live, so at GOGC=400 their heap grew to about
// 45 MiB before each collection; 40 MiB took 10–20 MB off their peak RSS
// at no measurable cost in CPU (BENCHMARKS.md, "2026-12-01, seventh
// session: serve's memory, bench/run in the production shape, and the
// commit floor").
const DefaultMemoryLimit = 40 << 20

// Default is the configuration before the file, the environment and the
// flags are applied.
func Default() Config {
	return Config{
		Environment:   plinth.EnvDevelopment,
		Listen:        "127.0.0.1:8080",
		DataDir:       "plinth-data",
		DemoData:      true,
		DemoResidents: 3000,
		MaxBodyBytes:  1 << 20,
		LogLevel:      "info",
		MemoryLimit:   DefaultMemoryLimit,

		ReportMaxDuration:  2 * time.Hour,
		ReportIdleTimeout:  time.Minute,
		TombstoneRetention: 35 * 24 * time.Hour,

		AuthClockSkew:    30 * time.Second,
		MaxTokenLifetime: 365 * 24 * time.Hour,
		AdminGroups:      "plinth-admins",
		AuditorGroups:    "plinth-auditors",
		Audit:            true,
		Relay:            true,

		StreamMaxAge:    7 * 24 * time.Hour,
		StreamMaxBytes:  1 << 30,
		OutboxRetention: 7 * 24 * time.Hour,

		LakeFlushInterval: time.Minute,

		HubOIDCGroupsClaim: "groups",
	}
}

// HubExternalAPI is an API not served by Plinth, registered by hand in
// the Developer Hub's catalogue.
type HubExternalAPI struct {
	Name          string            `yaml:"name"`
	Description   string            `yaml:"description"`
	ServiceArea   string            `yaml:"serviceArea"`
	ProductOwner  string            `yaml:"productOwner"`
	Contact       string            `yaml:"contact"`
	Environments  map[string]string `yaml:"environments"`
	Documentation string            `yaml:"documentation"`
	OpenAPIFile   string            `yaml:"openAPIFile"`
}

// LakeRoot is the data lake: the configured folder or s3:// URL, or the
// folder lake in the data directory.
func (c Config) LakeRoot() string {
	if c.Lake != "" {
		return c.Lake
	}
	return filepath.Join(c.DataDir, "lake")
}

// LakeInServe reports whether serve lands events in the lake: as set, or
// by default in development only.
func (c Config) LakeInServe() bool {
	if c.IsSet("lakeServe") {
		return c.LakeServe
	}
	return c.Environment == plinth.EnvDevelopment
}

// IsSet reports whether the setting with this plinth.yaml name was given
// by the file, the environment or a flag rather than left at its default.
func (c Config) IsSet(name string) bool { return c.set[name] }

// Check reports the first setting that is out of range.
func (c Config) Check() error {
	switch c.Environment {
	case plinth.EnvDevelopment, plinth.EnvStaging, plinth.EnvProduction:
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
	for name, d := range map[string]time.Duration{"report max duration": c.ReportMaxDuration,
		"report idle timeout": c.ReportIdleTimeout, "tombstone retention": c.TombstoneRetention,
		"lake flush interval": c.LakeFlushInterval, "outbox retention": c.OutboxRetention} {
		if d <= 0 {
			return fmt.Errorf("%s %s: must be positive", name, d)
		}
	}
	if !c.Audit && c.Environment != plinth.EnvDevelopment {
		return fmt.Errorf("auditing can be turned off only in development, not %s", c.Environment)
	}
	if err := c.checkAuth(); err != nil {
		return err
	}
	for _, p := range c.Policies {
		if p.Domain == "" || !slices.Contains([]string{plinth.EnvDevelopment, plinth.EnvStaging, plinth.EnvProduction}, p.Environment) {
			return fmt.Errorf("accessPolicies: every policy needs a domain and an environment (development, staging or production)")
		}
	}
	if c.MemoryLimit < 0 {
		return fmt.Errorf("memory limit %d: must not be negative (0 is no limit)", c.MemoryLimit)
	}
	if c.StreamMaxAge < 0 || c.StreamMaxBytes < 0 || c.AuditHotRetention < 0 {
		return fmt.Errorf("stream max age, stream max bytes and audit hot retention must not be negative (0 is no limit)")
	}
	if c.EventBus != "" && !strings.HasPrefix(c.EventBus, "sns://") {
		return fmt.Errorf("eventBus %q: only sns://REGION/ACCOUNT (NATS is natsURL)", c.EventBus)
	}
	if c.StreamReplicas < 0 || c.StreamReplicas > 5 {
		return fmt.Errorf("stream replicas %d: must be 0 to 5 (JetStream's limit)", c.StreamReplicas)
	}
	if c.DemoResidents < 0 {
		return fmt.Errorf("demo records %d: must not be negative", c.DemoResidents)
	}
	return nil
}

// checkAuth checks the settings of token verification.
func (c Config) checkAuth() error {
	if (c.HubOIDCIssuer == "") != (c.HubOIDCClientID == "") {
		return fmt.Errorf("hub OIDC: set both hubOIDCIssuer and hubOIDCClientID, or neither")
	}
	if c.TokenSecret != "" && len(c.TokenSecret) < 32 {
		return fmt.Errorf("token secret: must be at least 32 bytes long")
	}
	if c.AuthSecret != "" && len(c.AuthSecret) < 32 {
		return fmt.Errorf("auth secret: must be at least 32 bytes long")
	}
	for _, prev := range SplitList(c.AuthPreviousSecrets) {
		if len(prev) < 32 {
			return fmt.Errorf("auth previous secrets: each must be at least 32 bytes long")
		}
	}
	for _, prev := range SplitList(c.TokenPreviousSecrets) {
		if len(prev) < 32 {
			return fmt.Errorf("token previous secrets: each must be at least 32 bytes long")
		}
	}
	if c.MaxTokenLifetime <= 0 {
		return fmt.Errorf("max token lifetime %s: must be positive", c.MaxTokenLifetime)
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

// StoreURLFor is the store of one domain: its entry in Stores, or StoreURL.
func (c Config) StoreURLFor(domain string) string {
	if u := c.Stores[domain]; u != "" {
		return u
	}
	return c.StoreURL()
}

// AuthConfigured reports whether user tokens can be verified: a shared
// secret or a JWKS is set.
func (c Config) AuthConfigured() bool {
	return c.AuthSecret != "" || c.AuthJWKSURL != "" || c.AuthJWKSFile != ""
}

// AdminGroupList returns the admin groups.
func (c Config) AdminGroupList() []string { return SplitList(c.AdminGroups) }

// AuditorGroupList returns the auditor groups.
func (c Config) AuditorGroupList() []string { return SplitList(c.AuditorGroups) }

// SplitList splits a comma-separated list, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
