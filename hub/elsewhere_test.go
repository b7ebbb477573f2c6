package hub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/plinth-data/plinth/hub"
	"github.com/plinth-data/plinth/sqlite"
)

const councilTaxOpenAPI = `{"openapi": "3.1.0", "info": {"title": "Council tax", "version": "1"},
 "paths": {"/accounts/{ref}": {"get": {"operationId": "getAccount", "summary": "One council tax account",
   "parameters": [{"name": "ref", "in": "path", "required": true, "schema": {"type": "string"}}],
   "responses": {"200": {"description": "The account"}}}}}}`

// The catalogue lists the APIs of other Plinth deployments, read from
// their catalogue and OpenAPI document, and external APIs registered by
// hand; a deployment that cannot be read is named, not hidden.
func TestCatalogueListsOtherDeploymentsAndExternalAPIs(t *testing.T) {
	other := newEnv(t)
	// The catalogue of a deployment is public, like its OpenAPI document.
	res, err := http.Get(other.url + "/hub/catalogue.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Hub  string `json:"hub"`
		APIs []struct {
			Name     string `json:"name"`
			Entities []struct {
				Plural string `json:"plural"`
				Fields []struct {
					Path, PII string
				} `json:"fields"`
			} `json:"entities"`
		} `json:"apis"`
	}
	err = json.NewDecoder(res.Body).Decode(&doc)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 || len(doc.APIs) != 2 || len(doc.APIs[0].Entities) == 0 || len(doc.APIs[0].Entities[0].Fields) == 0 {
		t.Fatalf("catalogue.json: %d %v %+v", res.StatusCode, err, doc)
	}

	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/plinth.db")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st, func(c *hub.Config) {
		c.Deployments = []string{other.url, dead.URL}
		c.External = []hub.ExternalAPI{{Name: "council-tax", Description: "Council tax accounts and bills", ServiceArea: "Revenues",
			ProductOwner: "revenues@example.gov.uk", Contact: "revenues-api@example.gov.uk",
			Environments: map[string]string{"production": "https://ctax.example.gov.uk"}, OpenAPI: []byte(councilTaxOpenAPI)}}
	})
	host := strings.TrimPrefix(other.url, "http://")
	ann := e.signIn("ann", "staff")
	p := ann.get("/hub")
	mustContain(t, p, "5 of 5 APIs", `href="/hub/apis/residents@`+host+`"`, "served by another Plinth deployment: "+other.url,
		`href="/hub/apis/council-tax"`, "external API, not served by Plinth", dead.URL+" could not be read")
	mustContain(t, ann.get("/hub?q="+url.QueryEscape("council bills")), "1 of 5 APIs")
	// The fields of the other deployment's APIs are searched too.
	mustContain(t, ann.get("/hub?q=dateOfBirth"), `href="/hub/apis/residents@`+host+`"`, `href="/hub/apis/residents"`)

	p = ann.get("/hub/apis/residents@" + host)
	// Access is asked of the deployment's own Hub, at the public URL its
	// catalogue gives.
	mustContain(t, p, `href="http://example.test/hub/apis/residents/request"`, "<code>/api/v1/residents/{id}</code>",
		"Computed from the running configuration of "+other.url)
	p = ann.get("/hub/apis/council-tax")
	mustContain(t, p, "revenues-api@example.gov.uk", "<code>/accounts/{ref}</code>", "One council tax account", "https://ctax.example.gov.uk")
	if strings.Contains(p.body, "/hub/apis/council-tax/request") {
		t.Error("an external API offers a Plinth access request")
	}
	if p := ann.get("/hub/apis/council-tax/request"); p.status != http.StatusNotFound {
		t.Errorf("requesting access to an external API in this Hub: %d", p.status)
	}
}
