package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/config"
	"github.com/plinth-data/plinth/hub"
	"github.com/plinth-data/plinth/lake"
)

// withHub serves the Developer Hub at /hub in front of the API, with the
// same authorizer, auditor and store.
func withHub(ctx context.Context, cfg Config, api http.Handler, st plinth.Store, ds []*plinth.Domain, doc []byte, base string,
	authz plinth.Authorizer, auditor *audit.Auditor, logger *slog.Logger, background context.Context, wg *sync.WaitGroup) (http.Handler, error) {
	prov, err := plinth.ClassOf(ctx, st, ds)
	if err != nil {
		return nil, err
	}
	hc := hub.Config{
		Domains: ds, OpenAPI: doc, Environment: cfg.Environment, BaseURL: base, Store: st, Authorizer: authz,
		AuditOff: !cfg.Audit, Lake: cfg.LakeRoot(), AdminGroups: cfg.AdminGroupList(),
		SecureCookies: strings.HasPrefix(base, "https://"), Logger: logger,
		Compliance: hub.Compliance{Authorizer: true, Audit: cfg.Audit, Outbox: true, DataClass: prov},
	}
	if cfg.Audit {
		hc.Auditor = auditor
	}
	hc.SessionKeys = hubSessionKeys(cfg, logger)
	hc.Deployments = config.SplitList(cfg.HubDeployments)
	for _, x := range cfg.HubExternalAPIs {
		ext := hub.ExternalAPI{Name: x.Name, Description: x.Description, ServiceArea: x.ServiceArea, ProductOwner: x.ProductOwner,
			Contact: x.Contact, Environments: x.Environments, Documentation: x.Documentation}
		if x.OpenAPIFile != "" {
			if ext.OpenAPI, err = os.ReadFile(x.OpenAPIFile); err != nil {
				return nil, fmt.Errorf("hubExternalAPIs: %s: %w", x.Name, err)
			}
		}
		hc.External = append(hc.External, ext)
	}
	hc.AuditSearch = hubAuditSearch(ctx, cfg, st, logger)
	// Exceptions are carried out as support access on each domain's store
	// (PostgreSQL, as a user with CREATEROLE; DynamoDB: an IAM policy).
	hc.Support = newHubSupport(cfg, ds)
	if cfg.HubOIDCIssuer != "" {
		hc.OIDC = &hub.OIDC{Issuer: cfg.HubOIDCIssuer, ClientID: cfg.HubOIDCClientID, ClientSecret: cfg.HubOIDCClientSecret,
			RedirectURL: strings.TrimSuffix(base, "/") + hub.Base + "/signin/callback", Scopes: config.SplitList(cfg.HubOIDCScopes),
			GroupsClaim: cfg.HubOIDCGroupsClaim}
	}
	h, err := hub.New(ctx, hc)
	if err != nil {
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sweepContracts(background, h, logger)
	}()
	mux := http.NewServeMux()
	mux.Handle(hub.Base, h)
	mux.Handle(hub.Base+"/", h)
	mux.Handle("/", api)
	return mux, nil
}

// hubAuditSearch reads the audit trail for the Hub's access review: the
// store's records and those archived in the lake.
func hubAuditSearch(ctx context.Context, cfg Config, st plinth.Store, logger *slog.Logger) func(context.Context, plinth.AuditQuery, func(plinth.AuditRecord) error) error {
	as, ok := st.(plinth.AuditStore)
	if !ok {
		return nil
	}
	var archive audit.Archive
	if target, err := openLake(ctx, cfg); err == nil {
		archive = lake.NewAuditArchive(target)
	} else {
		logger.Warn("the Developer Hub's access review reads the store's audit records only: the lake cannot be opened", "error", err)
	}
	return func(ctx context.Context, q plinth.AuditQuery, fn func(plinth.AuditRecord) error) error {
		return audit.SearchAllWithArchive(ctx, as, archive, q, fn)
	}
}

// hubSessionKeys are the keys the Hub seals its session cookies with: the
// service-token secret and its previous ones, which every replica shares
// (the Hub derives its own keys from them). Without one, the Hub makes a
// key at start: sign-ins then last until a restart, on one replica.
func hubSessionKeys(cfg Config, logger *slog.Logger) [][]byte {
	sec, err := cfg.ServiceSecret()
	if err != nil {
		logger.Warn("the Developer Hub's sign-ins work on this replica only and end at a restart: set tokenSecret (PLINTH_TOKEN_SECRET) on every replica")
		return nil
	}
	keys := [][]byte{sec}
	for _, prev := range config.SplitList(cfg.TokenPreviousSecrets) {
		keys = append(keys, []byte(prev))
	}
	return keys
}

// sweepContracts ends contracts past their expiry every minute: a group
// contract's access leaves the policy (service-token grants expire with
// their tokens).
func sweepContracts(ctx context.Context, h *hub.Server, logger *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		n, err := h.SweepExpired(ctx, time.Now())
		if err != nil && ctx.Err() == nil {
			logger.Error("ending expired data contracts", "error", err)
		} else if n > 0 {
			logger.Info("expired data contracts ended", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
