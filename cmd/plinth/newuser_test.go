package main

// Tests of what a new user meets on the command line (issue 9).

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestSeedRefusesAnUnknownEntity(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"resident", "tenancies", "Residents"} {
		out, err := run(t, dir, nil, "seed", "-n", "1", "--entity", name)
		if err == nil {
			t.Fatalf("seed --entity %s exited 0:\n%s", name, out)
		}
		if !strings.Contains(out, name) || !strings.Contains(out, "residents") || !strings.Contains(out, "contacts") {
			t.Fatalf("seed --entity %s does not name it and list the valid entities:\n%s", name, out)
		}
	}
	if out, err := run(t, dir, nil, "seed", "-n", "1", "--entity", "resident"); !strings.Contains(out, "did you mean residents?") {
		t.Fatalf("a singular name gets no hint: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "seed", "-n", "3", "--entity", "contacts"); err != nil {
		t.Fatalf("seed --entity contacts: %v\n%s", err, out)
	}
}

func TestAccessSetWithoutGroupsNeedsNobody(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, dir, nil, "access", "set", "residents", "--env", "staging")
	if err == nil || !strings.Contains(out, "--nobody") {
		t.Fatalf("a policy without groups was accepted: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "access", "list", "--env", "staging"); err != nil || strings.Contains(out, "residents") {
		t.Fatalf("the refused policy was stored: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "access", "set", "residents", "--env", "staging", "--nobody", "--read-groups", "readers"); err == nil {
		t.Fatalf("--nobody with groups was accepted:\n%s", out)
	}
	if out, err := run(t, dir, nil, "access", "set", "residents", "--env", "staging", "--nobody"); err != nil {
		t.Fatalf("access set --nobody: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "access", "list", "--env", "staging"); err != nil || !strings.Contains(out, "residents") {
		t.Fatalf("the --nobody policy was not stored: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "access", "set", "--help"); err != nil || !strings.Contains(out, "--nobody") {
		t.Fatalf("access set --help does not document --nobody: %v\n%s", err, out)
	}
}

// TestDevelopmentTokensSurviveRestarts follows the quick start: the token
// serve prints keeps working after a restart, and plinth token issue, with
// no secret given, issues a service token serve accepts.
func TestDevelopmentTokensSurviveRestarts(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir, "--demo-records", "5")
	devToken := srv.token
	if devToken == "" {
		t.Fatal("serve printed no development token")
	}
	out, err := run(t, dir, nil, "token", "issue", "--consumer", "quick-start", "--api", "residents",
		"--endpoint", "/api/v1/residents/{id}", "--methods", "GET", "--expires", "1h",
		"--requested-by", "jo@example.org", "--authorised-by", "sam@example.org")
	if err != nil {
		t.Fatalf("token issue without a secret in development: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	serviceToken := lines[len(lines)-1]
	if res := get(t, srv.base+"/api/v1/residents/1", serviceToken); res.status != 200 {
		t.Fatalf("the issued token is refused by serve: %d %s", res.status, res.body)
	}
	srv.stop(t)

	srv = startServe(t, dir)
	for name, tok := range map[string]string{"development": devToken, "service": serviceToken} {
		if res := get(t, srv.base+"/api/v1/residents/1", tok); res.status != 200 {
			t.Fatalf("the %s token stopped working after a restart: %d %s", name, res.status, res.body)
		}
	}
	srv.stop(t)
}

func TestValidateNamesTheGivenFolder(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "empty"), 0o755)
	os.WriteFile(filepath.Join(dir, "a-file"), nil, 0o644)
	missing := filepath.Join(dir, "no-such-folder")
	for _, folder := range []string{missing, "empty", "a-file"} {
		out, err := run(t, dir, nil, "validate", "--domains", folder)
		if err == nil || !strings.Contains(out, folder) || strings.Contains(out, " . ") || strings.Contains(out, " .:") || strings.HasSuffix(strings.TrimSpace(out), " .") {
			t.Fatalf("validate --domains %s: %v\n%s", folder, err, out)
		}
	}
}

// TestEventsTailHelpAgreesWithREADME: the address README tells users to
// give serve and events tail is the one the command's help shows.
func TestEventsTailHelpAgreesWithREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	addr := regexp.MustCompile(`127\.0\.0\.1:\d+`)
	var row string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.Contains(line, "`plinth events tail") {
			row = line
		}
	}
	inREADME := addr.FindAllString(row, -1)
	out, err := run(t, t.TempDir(), nil, "events", "tail", "--help")
	if err != nil {
		t.Fatal(err)
	}
	inHelp := addr.FindAllString(out, -1)
	if len(inREADME) == 0 || len(inHelp) == 0 {
		t.Fatalf("no address in README's events tail row or in the help:\n%s\n%s", row, out)
	}
	for _, a := range append(inREADME, inHelp...) {
		if a != inHelp[0] {
			t.Fatalf("README gives %v, events tail --help gives %v", inREADME, inHelp)
		}
	}
	// And the configuration table's example agrees too.
	if !strings.Contains(string(readme), "e.g. `"+inHelp[0]+"`") {
		t.Fatalf("README's natsListen example is not %s", inHelp[0])
	}
}

// TestSubcommandsShowOnlyTheirFlags: serve has a flag for every setting;
// the other commands only for the settings they read.
func TestSubcommandsShowOnlyTheirFlags(t *testing.T) {
	serveOnly := []string{"listen", "demo-records", "max-body-bytes", "audit-mirror", "public-url", "nats-listen", "auth-jwks-url", "relay"}
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if !c.Runnable() || c.Name() == "serve" || c.Name() == "help" {
			return
		}
		seen++
		for _, name := range serveOnly {
			if c.Flags().Lookup(name) != nil {
				t.Errorf("%s has the serve flag --%s", c.CommandPath(), name)
			}
		}
	}
	walk(rootCommand())
	if seen < 15 {
		t.Fatalf("only %d commands checked", seen)
	}

	dir := t.TempDir()
	out, err := run(t, dir, nil, "token", "issue", "--help")
	if err != nil || strings.Contains(out, "--listen") || strings.Contains(out, "--demo-records") ||
		!strings.Contains(out, "--token-secret") || !strings.Contains(out, "--consumer") || !strings.Contains(out, "--env") {
		t.Fatalf("token issue --help: %v\n%s", err, out)
	}
	if n := strings.Count(out, "\n  -") + strings.Count(out, "\n      --"); n > 20 {
		t.Fatalf("token issue --help lists %d flags:\n%s", n, out)
	}
	out, err = run(t, dir, nil, "serve", "--help")
	for _, name := range append(serveOnly, "token-secret", "env", "data-dir") {
		if err != nil || !strings.Contains(out, "--"+name+" ") {
			t.Fatalf("serve --help lacks --%s: %v\n%s", name, err, out)
		}
	}
	for _, args := range [][]string{{"access", "set", "--help"}, {"audit", "search", "--help"}, {"seed", "--help"}} {
		out, err := run(t, dir, nil, args...)
		if err != nil || strings.Contains(out, "--listen") || !strings.Contains(out, "--store") {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	// A setting without a flag on a command still comes from the environment.
	if out, err := run(t, dir, []string{"PLINTH_ENV=production"}, "seed", "-n", "1"); err == nil || !strings.Contains(out, "production") {
		t.Fatalf("seed ignored PLINTH_ENV: %v\n%s", err, out)
	}
}

func TestREADMEGoVersionMatchesGoMod(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	want := "Go " + string(m[1]) + " or later"
	if !strings.Contains(string(readme), want) {
		t.Fatalf("README does not say %q", want)
	}
	if got := regexp.MustCompile(`Go \d+\.\d+(\.\d+)? or later`).FindAllString(string(readme), -1); len(got) != 1 {
		t.Fatalf("README names Go versions %v", got)
	}
}

// TestREADMELinksStayInTheRepository: every relative link of README points
// at a file of the repository, which a clone has.
func TestREADMELinksStayInTheRepository(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("../..")
	links := regexp.MustCompile(`\]\(([^)\s]+)\)|(?m)^\[[^\]]+\]:\s*(\S+)`).FindAllStringSubmatch(string(readme), -1)
	for _, l := range links {
		target := l[1] + l[2]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		target, _, _ = strings.Cut(target, "#")
		abs := filepath.Join(root, filepath.FromSlash(target))
		if rel, err := filepath.Rel(root, abs); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			t.Errorf("README links %s, outside the repository", target)
			continue
		}
		if _, err := os.Stat(abs); err != nil {
			t.Errorf("README links %s, which does not exist", target)
		}
	}
	if strings.Contains(string(readme), "../shared") {
		t.Error("README refers to ../shared")
	}
}

// TestSeedProgressBarEndsAtTotal: the bar shows 100% and the full count at
// the end, and its rate is counted from the start, not from the first batch.
func TestSeedProgressBarEndsAtTotal(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := time.Now()
	p := newProgressTo(&buf, 3000, "seeding things", logger)
	// The sleeps stand in for the work being measured, not waits for
	// anything: the first batch takes 100 ms to generate, the rest 20 ms
	// each, and the bar's rate must count from its start.
	time.Sleep(100 * time.Millisecond) // generating the first batch
	for range 3 {
		p.Add(1000)
		time.Sleep(20 * time.Millisecond)
	}
	elapsedAtLastAdd := time.Since(start)
	p.Finish()
	out := buf.String()
	frames := strings.FieldsFunc(out, func(r rune) bool { return r == '\r' || r == '\n' })
	var last string
	for _, f := range frames {
		if strings.TrimSpace(f) != "" {
			last = f
		}
	}
	if !strings.Contains(last, "100%") || !strings.Contains(last, "(3000/3000") {
		t.Fatalf("the bar does not end at 100%%; last frame %q of\n%q", last, out)
	}
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("the finished bar does not end its line: %q", out)
	}
	// No record arrives sooner than 100 ms after the start, so no rate can
	// exceed 3000 records in 100 ms (the old bar timed the first batch from
	// its own arrival, showing millions a second).
	for _, m := range regexp.MustCompile(`(\d+) it/s`).FindAllStringSubmatch(out, -1) {
		rate, _ := strconv.Atoi(m[1])
		if limit := 3000 / (100 * time.Millisecond).Seconds(); float64(rate) > limit*1.05 {
			t.Fatalf("absurd rate %d it/s (at most %.0f possible; %s elapsed) in\n%q", rate, limit, elapsedAtLastAdd, out)
		}
	}

	// Work that fails ends the bar's line, so the error starts a line.
	buf.Reset()
	p = newProgressTo(&buf, 3000, "seeding things", logger)
	p.Add(1000)
	p.Stop()
	if !strings.HasSuffix(buf.String(), "\n") {
		t.Fatalf("a stopped bar does not end its line: %q", buf.String())
	}
}

// TestServeRefusesHugeHeaders: request headers are bounded well below Go's
// default of 1 MiB.
func TestServeRefusesHugeHeaders(t *testing.T) {
	srv := startServe(t, t.TempDir(), "--demo-data=false")
	send := func(size int) int {
		req, _ := http.NewRequest("GET", srv.base+"/api/v1/healthcheck/ping", nil)
		req.Header.Set("X-Padding", strings.Repeat("a", size))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%d-byte header: %v", size, err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if status := send(200 << 10); status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 200 KiB header: %d, want 431", status)
	}
	if status := send(16 << 10); status != http.StatusOK {
		t.Fatalf("a 16 KiB header: %d, want 200", status)
	}
	srv.stop(t)

	// The server serve builds has every timeout set.
	s := newHTTPServer(http.NotFoundHandler(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if s.MaxHeaderBytes != 64<<10 || s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 {
		t.Fatalf("server limits: %+v", s)
	}
	readme, _ := os.ReadFile("../../README.md")
	for _, want := range []string{"64 KiB", "431", strconv.Itoa(int(readHeaderTimeout.Seconds())) + " s", strconv.Itoa(int(readTimeout.Seconds())) + " s",
		strconv.Itoa(int(writeTimeout.Seconds())) + " s", strconv.Itoa(int(idleTimeout.Minutes())) + "\nminutes"} {
		if !strings.Contains(strings.ReplaceAll(string(readme), "\n", " "), strings.ReplaceAll(want, "\n", " ")) {
			t.Errorf("README does not state the limit %q", want)
		}
	}
}
