package hub_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/hub"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/sqlite"
)

// chromiumPath is Debian's chromium, which scripts/tools installs.
func chromiumPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("PLINTH_TEST_CHROMIUM"), "/usr/bin/chromium"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (scripts/tools installs Debian's chromium)")
	}
	t.Skip("chromium is not installed: run scripts/tools as root, or set PLINTH_TEST_CHROMIUM")
	return ""
}

// screenshotDir is where the browser test saves its screenshots:
// PLINTH_TEST_OUTPUT/hub, else a folder under the system's temp folder.
func screenshotDir(t *testing.T) string {
	base := os.Getenv("PLINTH_TEST_OUTPUT")
	if base == "" {
		base = filepath.Join(os.TempDir(), "plinth-test-output")
	}
	dir := filepath.Join(base, "hub")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBrowserEndToEnd drives headless Chromium through the Hub as its
// users would: browse the catalogue, open an API's documentation, request
// access, approve as the owner, both sign in the browser (WebCrypto
// Ed25519), call the API with the granted token, revoke, and the call is
// denied.
func TestBrowserEndToEnd(t *testing.T) {
	exe := chromiumPath(t)
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/plinth.db")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st, func(c *hub.Config) {
		c.External = []hub.ExternalAPI{{Name: "council-tax", Description: "Council tax accounts and bills", ServiceArea: "Revenues",
			ProductOwner: "revenues@example.gov.uk", Contact: "revenues-api@example.gov.uk",
			Environments: map[string]string{"production": "https://ctax.example.gov.uk"}, OpenAPI: []byte(councilTaxOpenAPI)}}
	})
	shots := screenshotDir(t)
	keys := t.TempDir()
	pubs := map[string]string{}
	for _, who := range []string{"ann", "bob"} {
		pemB, pub, err := hub.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(keys, who+".key"), pemB, 0o600)
		pubs[who] = pub
	}
	alloc, cancel := chromedp.NewExecAllocator(t.Context(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1280, 1000))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // start the browser before any timeout
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, 120*time.Second)
	defer cancel()

	axeSource := axeCore(t)
	var violations []string
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			// Every page shown is checked for accessibility (WCAG 2.2 AA
			// rules of axe-core) before its screenshot.
			if _, err := chromedp.Evaluate[bool](axeSource+";true")(ctx, tg); err != nil {
				return chromedp.Void{}, fmt.Errorf("loading axe-core: %w", err)
			}
			found, err := chromedp.Evaluate[[]string](axeRun, chromedp.EvalAwaitPromise)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, fmt.Errorf("running axe-core: %w", err)
			}
			for _, v := range found {
				violations = append(violations, name+": "+v)
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg) // quality 100: PNG
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		}
	}
	signIn := func(subject string, groups ...string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(e.url+"/hub/signin"),
			chromedp.SetValue(chromedp.ID("token"), e.userToken(subject, groups...)),
			chromedp.Submit(chromedp.ID("token")),
			chromedp.WaitVisible(chromedp.CSS(`form[role="search"]`)),
		)
	}
	signOut := chromedp.Steps(chromedp.Click(chromedp.CSS(".signout button")), chromedp.WaitVisible(chromedp.ID("token")))
	addKey := func(who string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(e.url+"/hub/keys"),
			chromedp.SetValue(chromedp.ID("publicKey"), pubs[who]),
			chromedp.Submit(chromedp.ID("publicKey")),
			chromedp.WaitVisible(chromedp.Search(`//td[text()="current"]`)),
		)
	}
	browserSign := func(who string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.WaitVisible(chromedp.ID("browser-sign")),
			chromedp.SetUploadFiles(chromedp.ID("private-key"), []string{filepath.Join(keys, who+".key")}),
			chromedp.Click(chromedp.CSS(`#browser-sign button[type="submit"]`)),
		)
	}

	// The check itself must see a violation: an image without alt text.
	axeSeesViolations := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		found, err := chromedp.Evaluate[[]string](`(() => { const i = document.createElement("img"); i.id = "axe-probe"; i.src = "data:,"; document.querySelector("main").append(i); })();`+
			axeRun+`.then(v => { document.getElementById("axe-probe").remove(); return v; })`, chromedp.EvalAwaitPromise)(ctx, tg)
		if err == nil && !strings.Contains(strings.Join(found, "\n"), "image-alt") {
			err = fmt.Errorf("axe-core did not report an image without alt text: %v", found)
		}
		return chromedp.Void{}, err
	}

	var catalogue, apiText, requestURL, status string
	err = chromedp.Do(ctx,
		signIn("ann", "staff"),
		into(&catalogue, chromedp.Text(chromedp.CSS("main"))),
		shot("1-catalogue"),
		axeSeesViolations,
		chromedp.Click(chromedp.CSS(`a[href="/hub/apis/residents"]`)),
		chromedp.WaitVisible(chromedp.ID("reference")),
		into(&apiText, chromedp.Text(chromedp.ID("reference"))),
		shot("2-api-residents"),
		addKey("ann"),
		chromedp.Navigate(e.url+"/hub/apis/residents/request"),
		chromedp.Click(chromedp.ID("e-residents")),
		chromedp.Click(chromedp.ID("op-read")),
		chromedp.SetValue(chromedp.ID("purpose"), "Check eligibility for housing benefit"),
		chromedp.SetValue(chromedp.ID("legalBasis"), "public-task"),
		chromedp.SetValue(chromedp.ID("specialCondition"), "substantial-public-interest"),
		chromedp.SetValue(chromedp.ID("consumer"), "benefits-checker"),
		shot("3-request-form"),
		chromedp.Submit(chromedp.ID("consumer")),
		chromedp.WaitVisible(chromedp.Search(`//dd/strong[text()="pending"]`)),
		into(&requestURL, chromedp.Location()),
		signOut,
		signIn("bob", "social-care-owners"),
		addKey("bob"),
		navigateTo(&requestURL),
		chromedp.SetValue(chromedp.ID("comment"), "Purpose and basis are sound"),
		shot("4-owner-decides"),
		chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		browserSign("bob"),
		chromedp.WaitVisible(chromedp.Search(`//li[contains(., "signed as approver")]`)),
		shot("5-approved-and-signed"),
		signOut,
		signIn("ann", "staff"),
		navigateTo(&requestURL),
		browserSign("ann"),
		chromedp.WaitVisible(chromedp.Search(`//h1[text()="Contract in force"]`)),
		shot("6-tokens"),
	)
	if err != nil {
		t.Fatalf("browser: %v (screenshots so far in %s)", err, shots)
	}
	for _, want := range []string{"residents", "contacts", "council-tax", "3 of 3 APIs"} {
		if !strings.Contains(catalogue, want) {
			t.Errorf("the catalogue lacks %q", want)
		}
	}
	if !strings.Contains(apiText, "/api/v1/residents/{id}") || !strings.Contains(apiText, "ResidentCreate") {
		t.Errorf("the API documentation lacks its operations: %.300s", apiText)
	}
	tokens, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("textarea")).map(t => t.getAttribute("aria-label") + "|" + t.value)`))
	if err != nil {
		t.Fatal(err)
	}
	var listToken string
	for _, tk := range tokens {
		if label, tok, _ := strings.Cut(tk, "|"); label == "Token for GET /api/v1/residents" {
			listToken = tok
		}
	}
	if listToken == "" {
		t.Fatalf("no token for GET /api/v1/residents among %d", len(tokens))
	}
	if s := call(t, e, "GET", "/api/v1/residents?limit=1", listToken); s != 200 {
		t.Fatalf("the granted call: %d", s)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(requestURL),
		chromedp.Click(chromedp.CSS("button.danger")),
		chromedp.WaitVisible(chromedp.Search(`//dd/strong[text()="revoked"]`)),
		into(&status, chromedp.Text(chromedp.CSS("dd strong"))),
		shot("7-revoked"),
	)
	if err != nil {
		t.Fatalf("revoking in the browser: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for call(t, e, "GET", "/api/v1/residents?limit=1", listToken) == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the call still succeeds 5 s after the contract was revoked")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The owner reviews access: the charts show the granted call and the
	// denied one after revocation. Then the other pages: the external
	// API, a request for an endpoint, the exception form, and sign-in with
	// single sign-on against an OpenID provider.
	var review, sso string
	var wide []string // pages wider than a phone's screen
	_, p, hubURL := newOIDCEnv(t)
	// The charts read the chained audit trail: wait for the denied call.
	plinthtest.Eventually(t, 5*time.Second, func() bool {
		recs, _, _ := e.store.AuditRecords(context.Background(), plinth.AuditQuery{Domain: "residents", Limit: 500})
		for _, r := range recs {
			if r.Decision == plinth.DecisionDeny && r.Principal.Consumer == "benefits-checker" {
				return true
			}
		}
		return false
	}, "the denied call in the audit trail")
	err = chromedp.Do(ctx,
		signOut,
		signIn("bob", "social-care-owners"),
		chromedp.Navigate(e.url+"/hub/apis/residents/access"),
		chromedp.WaitVisible(chromedp.CSS("svg.chart")),
		into(&review, chromedp.Text(chromedp.CSS("main"))),
		shot("8-access-review"),
		chromedp.Navigate(e.url+"/hub/apis/council-tax"),
		chromedp.WaitVisible(chromedp.ID("reference")),
		shot("9-external-api"),
		chromedp.Navigate(e.url+"/hub/apis/residents/endpoint"),
		chromedp.SetValue(chromedp.ID("need"), "Search residents by UPRN"),
		chromedp.SetValue(chromedp.ID("purpose"), "Match residents to properties"),
		shot("10-endpoint-request"),
		chromedp.Submit(chromedp.ID("need")),
		chromedp.WaitVisible(chromedp.Search(`//dd/strong[text()="pending"]`)),
		chromedp.Navigate(e.url+"/hub/apis/residents/exception"),
		chromedp.WaitVisible(chromedp.ID("hours")),
		shot("11-exception-request"),
		chromedp.Navigate(e.url+"/hub/requests"),
		shot("12-requests"),
		onPhone(e.url, requestURL, &wide),
		shot("14-phone-access-review"),
		chromedp.EmulateViewport(1280, 1000),
		chromedp.Navigate(hubURL+"/hub/signin"),
		shot("13-signin-sso"),
		chromedp.Click(chromedp.Search(`//a[text()="Sign in with single sign-on"]`)),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SetValue(chromedp.ID("username"), "test-user@127.0.0.1"),
		chromedp.SetValue(chromedp.ID("password"), "verysecure"),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.CSS(`form[role="search"]`)),
		into(&sso, chromedp.Text(chromedp.CSS(".signout span"))),
	)
	if err != nil {
		t.Fatalf("browser, review and other pages: %v (screenshots so far in %s)", err, shots)
	}
	for _, want := range []string{"Requests per consumer per day", "benefits-checker (service token)", "Denied requests per day: 1 denied requests"} {
		if !strings.Contains(review, want) {
			t.Errorf("the access review lacks %q", want)
		}
	}
	if len(wide) > 0 {
		t.Errorf("pages wider than a phone's screen (375 px), so they scroll sideways: %v", wide)
	}
	if sso != "Signed in as Test User" {
		t.Errorf("after single sign-on in the browser: %q", sso)
	}
	_ = p
	if len(violations) > 0 {
		t.Errorf("serious accessibility violations:\n%s", strings.Join(violations, "\n"))
	}
	t.Logf("screenshots in %s", shots)
	files, _ := filepath.Glob(filepath.Join(shots, "*.png"))
	if len(files) < 13 {
		t.Errorf("%d screenshots saved; want 13", len(files))
	}
	if status != "revoked" {
		t.Errorf("status after revoking: %q", status)
	}
}

// onPhone opens the main pages at a phone's width (375 CSS pixels) and
// adds to wide each one that is wider than the screen (a page must not
// scroll sideways; a wide table scrolls in its own box). It ends on the
// access review.
func onPhone(base, contract string, wide *[]string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		if _, err := chromedp.EmulateViewport(375, 812, chromedp.EmulateScale(2), chromedp.EmulateMobile)(ctx, tg); err != nil {
			return chromedp.Void{}, err
		}
		for _, u := range []string{base + "/hub", base + "/hub/apis/residents", base + "/hub/apis/residents/request",
			base + "/hub/requests", contract, base + "/hub/keys", base + "/hub/apis/residents/exception", base + "/hub/apis/residents/access"} {
			if _, err := chromedp.Navigate(u)(ctx, tg); err != nil {
				return chromedp.Void{}, err
			}
			w, err := chromedp.Evaluate[int](`document.documentElement.scrollWidth - screen.width`)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			if w > 0 {
				widest, _ := chromedp.Evaluate[string](widestElement)(ctx, tg)
				*wide = append(*wide, fmt.Sprintf("%s (%d px too wide; widest: %s)", u, w, widest))
			}
		}
		return chromedp.Void{}, nil
	}
}

// widestElement names the element reaching furthest right (outside boxes
// that scroll), and its text.
const widestElement = `(() => {
  let widest = null, right = 0;
  for (const el of document.querySelectorAll("body *")) {
    if (el.parentElement.closest(".scroll, pre")) continue;
    const r = el.getBoundingClientRect().right;
    if (r > right) { right = r; widest = el; }
  }
  return widest ? widest.tagName + "." + widest.className + " " + (widest.textContent || "").slice(0, 60) : "";
})()`

// axeRun runs axe-core's WCAG 2.0-2.2 A and AA rules and lists the
// serious and critical violations.
const axeRun = `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]}})
	.then(r => r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
	.map(v => v.id + " (" + v.impact + "): " + v.help + " — " + v.nodes.map(n => n.target.join(" ")).join(", ")))`

// axeCore is axe-core's script, which scripts/tools installs from npm.
func axeCore(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join("..", "tools", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("axe-core is not installed (run scripts/tools): %v", err)
		}
		t.Skipf("axe-core is not installed (run scripts/tools): %v", err)
	}
	return string(b)
}

// into runs a that returns a value and keeps the value in dst.
func into[T any](dst *T, a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, tg)
		*dst = v
		return chromedp.Void{}, err
	}
}

// navigateTo navigates to the URL *u holds when the step runs.
func navigateTo(u *string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		return chromedp.Navigate(*u)(ctx, tg)
	}
}
