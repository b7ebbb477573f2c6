package hub

import (
	"net/http"
	"slices"
	"strings"

	"github.com/plinth-data/plinth"
)

// apiEntry is one API of the catalogue: a domain and what the Hub says
// about it.
type apiEntry struct {
	// Key names the entry in the Hub's URLs: the domain's name, for an
	// API of another deployment or an external one a name of its own.
	Key          string
	Domain       *plinth.Domain
	OwnerGroups  []string // who approves requests
	BaseURL      string
	Environment  string
	Entities     []entityEntry
	Events       []eventEntry
	Lake         string
	SpecialCount int
	search       string // lower-case text a search matches
	// Elsewhere is set for an API this Hub does not grant access to: of
	// another Plinth deployment, or external.
	Elsewhere *elsewhere
}

type entityEntry struct {
	Plural      string       `json:"plural"`
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Fields      []fieldEntry `json:"fields"`
	Special     bool         `json:"special"`
}

type fieldEntry struct {
	Path        string `json:"path"`
	Type        string `json:"type"`
	PII         string `json:"pii"`
	Description string `json:"description,omitempty"`
	Required    bool   `json:"required"`
}

type eventEntry struct {
	Type    string `json:"type"`
	Subject string `json:"subject"`
}

func buildCatalogue(cfg Config) []apiEntry {
	var out []apiEntry
	for _, d := range cfg.Domains {
		a := apiEntry{Key: d.Name, Domain: d, OwnerGroups: ownerGroups(d, cfg.AdminGroups), BaseURL: cfg.BaseURL, Environment: cfg.Environment}
		if cfg.Lake != "" {
			a.Lake = strings.TrimSuffix(cfg.Lake, "/") + "/" + d.Name + "/"
		}
		words := []string{d.Name, d.Description, d.Owner.ServiceArea, d.Owner.ProductOwner, d.SourceSystem}
		for _, e := range d.Entities {
			ee := entityEntry{Plural: e.Plural, Name: e.Name, Description: e.Description}
			ee.Fields = flatten(e.Fields, "")
			for _, f := range ee.Fields {
				ee.Special = ee.Special || f.PII == string(plinth.PIISpecial)
				words = append(words, f.Path, f.Description)
			}
			if ee.Special {
				a.SpecialCount++
			}
			a.Entities = append(a.Entities, ee)
			words = append(words, e.Name, e.Plural, e.Description)
			for _, k := range []plinth.EventKind{plinth.EventCreated, plinth.EventUpdated, plinth.EventDeleted} {
				a.Events = append(a.Events, eventEntry{Type: plinth.EventTypeName(e, k), Subject: plinth.EventSubject(cfg.Environment, e, k)})
			}
		}
		a.index(words...)
		out = append(out, a)
	}
	return out
}

// index sets the text a search matches.
func (a *apiEntry) index(words ...string) {
	a.search = strings.ToLower(strings.Join(words, " "))
}

// ownerGroups are the groups that approve requests to d: its owner.groups,
// else the admin groups.
func ownerGroups(d *plinth.Domain, admin []string) []string {
	if len(d.Owner.Groups) > 0 {
		return d.Owner.Groups
	}
	return admin
}

// flatten lists fields with nested ones under dotted paths.
func flatten(fs []*plinth.Field, prefix string) []fieldEntry {
	var out []fieldEntry
	for _, f := range fs {
		path := prefix + f.Name
		typ := string(f.Type)
		if f.Format != "" {
			typ += " (" + string(f.Format) + ")"
		}
		pii := string(f.PII)
		if pii == "" {
			pii = string(plinth.PIINone)
		}
		out = append(out, fieldEntry{Path: path, Type: typ, PII: pii, Description: f.Description, Required: f.Required})
		out = append(out, flatten(f.Fields, path+".")...)
		if f.Items != nil {
			out = append(out, flatten(f.Items.Fields, path+"[].")...)
		}
	}
	return out
}

func (s *Server) api(name string) *apiEntry {
	for i := range s.catalogue {
		if s.catalogue[i].Domain.Name == name {
			return &s.catalogue[i]
		}
	}
	return nil
}

// apiOf is the API the request's path names, of this deployment; nil,
// with a "not found" page shown, when there is none.
func (s *Server) apiOf(w http.ResponseWriter, r *http.Request) *apiEntry {
	a := s.api(r.PathValue("api"))
	if a == nil {
		s.fail(w, r, refused(http.StatusNotFound, "there is no API named %s", r.PathValue("api")))
	}
	return a
}

// matches reports whether every word of the query is in the entry's text.
func (a apiEntry) matches(q string) bool {
	for _, w := range strings.Fields(strings.ToLower(q)) {
		if !strings.Contains(a.search, w) {
			return false
		}
	}
	return true
}

func (s *Server) cataloguePage(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	all, problems := s.everyAPI(r.Context())
	var found []apiEntry
	for _, a := range all {
		if a.matches(q) {
			found = append(found, a)
		}
	}
	s.render(w, r, http.StatusOK, "catalogue", map[string]any{"Title": "API catalogue", "Query": q, "APIs": found, "Total": len(all), "Problems": problems})
}

func (s *Server) apiPage(w http.ResponseWriter, r *http.Request) {
	all, _ := s.everyAPI(r.Context())
	i := slices.IndexFunc(all, func(a apiEntry) bool { return a.Key == r.PathValue("api") })
	if i < 0 {
		s.render(w, r, http.StatusNotFound, "error", map[string]any{"Title": "Not found", "Message": "There is no API named " + r.PathValue("api") + " in the catalogue."})
		return
	}
	a := &all[i]
	data := map[string]any{"Title": a.Domain.Name, "API": a, "Doc": s.docs[a.Domain.Name]}
	if a.Elsewhere != nil {
		data["Doc"], data["Compliance"] = a.Elsewhere.Doc, a.Elsewhere.Compliance
	} else {
		data["Compliance"], data["Exceptions"] = s.compliance(), s.cfg.Support != nil
		data["IsOwner"] = s.isOwner(sessionFrom(r).Principal, a)
	}
	s.render(w, r, http.StatusOK, "api", data)
}

// complianceItem is one line of the compliance panel.
type complianceItem struct {
	Check string `json:"check"`
	State string `json:"state"`
	OK    bool   `json:"ok"`
}

func (s *Server) compliance() []complianceItem {
	c := s.cfg.Compliance
	onOff := func(name string, on bool, onText, offText string) complianceItem {
		if on {
			return complianceItem{name, onText, true}
		}
		return complianceItem{name, offText, false}
	}
	class := c.DataClass
	classOK := plinth.CheckServe(s.cfg.Environment, class) == nil
	return []complianceItem{
		onOff("Authorizer", c.Authorizer, "on: every call needs a token the access policy or a grant allows", "off"),
		onOff("Audit trail", c.Audit, "on: every request that touches data is recorded, hash-chained", "off (development only)"),
		onOff("Change events", c.Outbox, "on: every write commits its event in the transactional outbox", "off"),
		{"Data class of the store", string(class.Class) + " — " + class.String(), classOK},
		{"Environment", s.cfg.Environment, true},
	}
}

func (s *Server) isOwner(p plinth.Principal, a *apiEntry) bool {
	for _, g := range p.Groups {
		if slices.Contains(a.OwnerGroups, g) {
			return true
		}
	}
	return false
}
