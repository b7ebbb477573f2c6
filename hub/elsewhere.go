package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/plinth-data/plinth"
)

// ExternalAPI is an API registered in the catalogue by hand: not served
// by Plinth, so access to it is asked of its owner.
type ExternalAPI struct {
	Name         string
	Description  string
	ServiceArea  string
	ProductOwner string
	Contact      string            // how to ask for access
	Environments map[string]string // environment → base URL
	// Documentation is a link to its documentation; OpenAPI, when given,
	// is its OpenAPI document, rendered like Plinth's.
	Documentation string
	OpenAPI       []byte
}

// elsewhere is what the catalogue knows of an API this Hub does not grant
// access to.
type elsewhere struct {
	Deployment   string // base URL of the other Plinth deployment, if one serves it
	Hub          string // where to ask for access there
	Contact      string // an external API's owner contact
	Environments []envURL
	DocsURL      string
	Doc          apiDoc
	Compliance   []complianceItem
}

type envURL struct{ Environment, URL string }

// catalogueDoc is the Hub's catalogue as JSON (GET {Base}/catalogue.json):
// what other deployments' Hubs read to list this one's APIs.
type catalogueDoc struct {
	Environment string         `json:"environment"`
	BaseURL     string         `json:"baseUrl"`
	Hub         string         `json:"hub"`
	APIs        []catalogueAPI `json:"apis"`
}

type catalogueAPI struct {
	Name        string           `json:"name"`
	Description string           `json:"description"`
	Owner       catalogueOwner   `json:"owner"`
	Entities    []entityEntry    `json:"entities"`
	Events      []eventEntry     `json:"events"`
	Lake        string           `json:"lake,omitempty"`
	Compliance  []complianceItem `json:"compliance"`
}

type catalogueOwner struct {
	ServiceArea  string   `json:"serviceArea"`
	ProductOwner string   `json:"productOwner"`
	CloudAccount string   `json:"cloudAccount,omitempty"`
	Groups       []string `json:"groups"`
}

// catalogueJSON serves the catalogue of this deployment's own APIs. Like
// the OpenAPI document it describes APIs, never data, so it needs no
// sign-in.
func (s *Server) catalogueJSON(w http.ResponseWriter, _ *http.Request) {
	doc := catalogueDoc{Environment: s.cfg.Environment, BaseURL: s.cfg.BaseURL, Hub: strings.TrimSuffix(s.cfg.BaseURL, "/") + Base, APIs: []catalogueAPI{}}
	for _, a := range s.catalogue {
		o := a.Domain.Owner
		doc.APIs = append(doc.APIs, catalogueAPI{Name: a.Domain.Name, Description: a.Domain.Description, Entities: a.Entities,
			Events: a.Events, Lake: a.Lake, Compliance: s.compliance(),
			Owner: catalogueOwner{ServiceArea: o.ServiceArea, ProductOwner: o.ProductOwner, CloudAccount: o.CloudAccount, Groups: a.OwnerGroups}})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}

// remoteTTL is how long the catalogues of other deployments are kept
// before they are read again.
const remoteTTL = 5 * time.Minute

// remotes are the other deployments' APIs, read at most every remoteTTL.
type remotes struct {
	mu       sync.Mutex
	read     time.Time
	apis     []apiEntry
	problems []string
}

// everyAPI is the whole catalogue: this deployment's APIs, other
// deployments' (as last read; a deployment that cannot be read is named
// in problems) and the external ones.
func (s *Server) everyAPI(ctx context.Context) ([]apiEntry, []string) {
	s.remote.mu.Lock()
	defer s.remote.mu.Unlock()
	if len(s.cfg.Deployments) > 0 && time.Since(s.remote.read) > remoteTTL {
		s.remote.apis, s.remote.problems = s.readDeployments(ctx)
		s.remote.read = time.Now()
	}
	all := slices.Concat(s.catalogue, s.remote.apis, s.external)
	return all, s.remote.problems
}

// readDeployments reads each deployment's catalogue and OpenAPI document.
func (s *Server) readDeployments(ctx context.Context) ([]apiEntry, []string) {
	var out []apiEntry
	var problems []string
	taken := map[string]bool{}
	for _, a := range s.catalogue {
		taken[a.Key] = true
	}
	for _, base := range s.cfg.Deployments {
		entries, err := s.readDeployment(ctx, strings.TrimSuffix(base, "/"))
		if err != nil {
			s.logger.Warn("hub: reading another deployment's catalogue", "deployment", base, "error", err)
			problems = append(problems, fmt.Sprintf("%s could not be read: %v", base, err))
			continue
		}
		for _, a := range entries {
			a.Key = uniqueKey(a.Domain.Name, hostOf(base), taken)
			out = append(out, a)
		}
	}
	return out, problems
}

// uniqueKey is name, or name@qualifier when name is taken.
func uniqueKey(name, qualifier string, taken map[string]bool) string {
	key := name
	if taken[key] {
		key = name + "@" + qualifier
	}
	taken[key] = true
	return key
}

func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}

func (s *Server) readDeployment(ctx context.Context, base string) ([]apiEntry, error) {
	var doc catalogueDoc
	if err := s.getJSON(ctx, base+Base+"/catalogue.json", &doc); err != nil {
		return nil, err
	}
	var openapi json.RawMessage
	if err := s.getJSON(ctx, base+"/api/v1/openapi.json", &openapi); err != nil {
		return nil, err
	}
	var out []apiEntry
	for _, c := range doc.APIs {
		d := &plinth.Domain{Name: c.Name, Description: c.Description,
			Owner: plinth.Owner{ServiceArea: c.Owner.ServiceArea, ProductOwner: c.Owner.ProductOwner, CloudAccount: c.Owner.CloudAccount, Groups: c.Owner.Groups}}
		for _, e := range c.Entities {
			d.Entities = append(d.Entities, &plinth.Entity{Name: e.Name, Plural: e.Plural, Description: e.Description})
		}
		docs, err := buildDocs(openapi, []*plinth.Domain{d})
		if err != nil {
			return nil, err
		}
		a := apiEntry{Domain: d, OwnerGroups: c.Owner.Groups, BaseURL: doc.BaseURL, Environment: doc.Environment,
			Entities: c.Entities, Events: c.Events, Lake: c.Lake,
			Elsewhere: &elsewhere{Deployment: base, Hub: doc.Hub, Doc: docs[d.Name], Compliance: c.Compliance}}
		words := []string{c.Name, c.Description, c.Owner.ServiceArea, c.Owner.ProductOwner}
		for _, e := range c.Entities {
			words = append(words, e.Name, e.Plural, e.Description)
			if e.Special {
				a.SpecialCount++
			}
			for _, f := range e.Fields {
				words = append(words, f.Path, f.Description)
			}
		}
		a.index(words...)
		out = append(out, a)
	}
	return out, nil
}

// getJSON reads a JSON document of another deployment, within 5 seconds.
func (s *Server) getJSON(ctx context.Context, u string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	c := s.cfg.HTTPClient
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, res.Status)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 32<<20)).Decode(into); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// externalEntries are the catalogue entries of the external APIs; their
// names must be unique, also among this deployment's APIs.
func externalEntries(ext []ExternalAPI, local []apiEntry) ([]apiEntry, error) {
	taken := map[string]bool{}
	for _, a := range local {
		taken[a.Key] = true
	}
	var out []apiEntry
	for i, x := range ext {
		if x.Name == "" || taken[x.Name] || strings.ContainsAny(x.Name, "/?#") {
			return nil, fmt.Errorf("hub: external API %d: name %q is empty, has / ? or #, or is taken", i+1, x.Name)
		}
		taken[x.Name] = true
		d := &plinth.Domain{Name: x.Name, Description: x.Description, Owner: plinth.Owner{ServiceArea: x.ServiceArea, ProductOwner: x.ProductOwner}}
		el := &elsewhere{Contact: x.Contact, DocsURL: x.Documentation}
		for env, u := range x.Environments {
			el.Environments = append(el.Environments, envURL{env, u})
		}
		sort.Slice(el.Environments, func(i, j int) bool { return el.Environments[i].Environment < el.Environments[j].Environment })
		if len(x.OpenAPI) > 0 {
			doc, err := wholeDoc(x.OpenAPI)
			if err != nil {
				return nil, fmt.Errorf("hub: external API %s: %w", x.Name, err)
			}
			el.Doc = doc
		}
		a := apiEntry{Key: x.Name, Domain: d, Elsewhere: el}
		a.index(x.Name, x.Description, x.ServiceArea, x.ProductOwner, x.Contact)
		out = append(out, a)
	}
	return out, nil
}
