package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/hub"
)

// withHub serves the Developer Hub at /hub in front of the API, with the
// same authorizer, auditor and store.
func withHub(ctx context.Context, cfg Config, api http.Handler, st plinth.Store, ds []*plinth.Domain, doc []byte, base string,
	authz plinth.Authorizer, auditor *audit.Auditor, logger *slog.Logger) (http.Handler, error) {
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
	h, err := hub.New(ctx, hc)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(hub.Base, h)
	mux.Handle(hub.Base+"/", h)
	mux.Handle("/", api)
	return mux, nil
}
