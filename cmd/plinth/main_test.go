package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plinth-data/plinth/plinthtest"
)

var binary string

// TestMain builds the plinth binary once, so tests run it as a user would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plinth-cmd-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "plinth")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		panic("building plinth: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestServeWithNoArguments runs `plinth serve` as the quick start does: in
// an empty folder, no configuration. It must create the SQLite file, load
// demo data, print URLs that work, and stop cleanly on SIGTERM.
func TestServeWithNoArguments(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir, "--demo-records", "500")

	// Never anonymous, even in development.
	if res := get(t, srv.base+"/api/v1/residents?limit=3", ""); res.status != 401 {
		t.Fatalf("anonymous list: %d %s", res.status, res.body)
	}
	res := get(t, srv.base+"/api/v1/residents?limit=3", srv.token)
	var page struct {
		Residents  []map[string]any `json:"residents"`
		NextCursor *string          `json:"nextCursor"`
	}
	if err := json.Unmarshal(res.body, &page); err != nil || len(page.Residents) != 3 || page.NextCursor == nil {
		t.Fatalf("demo data list: %v %s", err, res.body)
	}
	if _, err := os.Stat(filepath.Join(dir, "plinth-data", "plinth.db")); err != nil {
		t.Fatalf("no SQLite file in ./plinth-data: %v", err)
	}
	if res := get(t, srv.base+"/api/v1/contacts?limit=1", srv.token); res.status != 200 {
		t.Fatalf("contacts: %d %s", res.status, res.body)
	}
	// The Developer Hub is served beside the API.
	if res := get(t, srv.base+"/hub/signin", ""); res.status != 200 || !bytes.Contains(res.body, []byte("Plinth Developer Hub")) {
		t.Fatalf("the Hub's sign-in page: %d %.200s", res.status, res.body)
	}
	srv.stop(t)
}

// server is a running `plinth serve`.
type server struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	base   string
	token  string // the development token it printed, if any
}

// startServe runs plinth serve in dir and waits for its welcome text.
func startServe(t testing.TB, dir string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = srv.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	urlRE := regexp.MustCompile(`curl '(http://127\.0\.0\.1:\d+)/api/v1/healthcheck/ping'`)
	tokenRE := regexp.MustCompile(`export PLINTH_TOKEN=(\S+)`)
	deadline := time.After(60 * time.Second)
	for srv.base == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("serve exited before printing its URLs:\n%s", srv.stderr.String())
			}
			if m := urlRE.FindStringSubmatch(line); m != nil {
				srv.base = m[1]
			}
			if m := tokenRE.FindStringSubmatch(line); m != nil {
				srv.token = m[1]
			}
		case <-deadline:
			t.Fatalf("serve printed no URLs within 60s:\n%s", srv.stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	return srv
}

// stop sends SIGTERM and expects a clean, prompt exit.
func (srv *server) stop(t testing.TB) {
	t.Helper()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve did not exit cleanly on SIGTERM: %v\n%s", err, srv.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop within 20s of SIGTERM")
	}
	if !strings.Contains(srv.stderr.String(), `"msg":"stopped"`) {
		t.Fatalf("no shutdown log line:\n%s", srv.stderr.String())
	}
}

type httpResult struct {
	status int
	body   []byte
}

func get(t *testing.T, url, token string) httpResult {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return httpResult{res.StatusCode, body}
}

// TestServiceTokenFromTheCLI issues a token with plinth token issue against
// the store a running server uses, calls the API with it, and revokes it.
func TestServiceTokenFromTheCLI(t *testing.T) {
	dir := t.TempDir()
	secret := "a-service-token-secret-of-32-bytes-or-more"
	srv := startServe(t, dir, "--demo-records", "20", "--token-secret", secret)
	out, err := run(t, dir, nil, "token", "issue", "--token-secret", secret, "--consumer", "housing-listener",
		"--type", "listener", "--api", "residents", "--endpoint", "/api/v1/residents/{id}", "--methods", "get",
		"--expires", "24h", "--requested-by", "jo@example.org", "--authorised-by", "sam@example.org")
	if err != nil {
		t.Fatalf("token issue: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^Token (\S+) for housing-listener.*\n.*\n\n(\S+)$`).FindStringSubmatch(strings.TrimSpace(out))
	if m == nil {
		t.Fatalf("token issue output:\n%s", out)
	}
	id, token := m[1], m[2]
	if res := get(t, srv.base+"/api/v1/residents/1", token); res.status != 200 {
		t.Fatalf("service token on its endpoint: %d %s", res.status, res.body)
	}
	if res := get(t, srv.base+"/api/v1/residents", token); res.status != 403 {
		t.Fatalf("service token on another endpoint: %d %s", res.status, res.body)
	}
	if out, err := run(t, dir, nil, "token", "list"); err != nil || !strings.Contains(out, id) || strings.Contains(out, token) {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "token", "revoke", id); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %v\n%s", err, out)
	}
	plinthtest.Eventually(t, 6*time.Second, func() bool {
		return get(t, srv.base+"/api/v1/residents/1", token).status != 200
	}, "revoked token still accepted")
	out, err = run(t, dir, nil, "token", "issue", "--token-secret", secret, "--consumer", "x", "--api", "residents",
		"--endpoint", "/api/v1/residents/{id}", "--expires", "24h", "--requested-by", "a", "--authorised-by", "b", "--methods", "PUT")
	if err == nil || !strings.Contains(out, "methods") {
		t.Fatalf("bad method accepted:\n%s", out)
	}
	srv.stop(t)
}

func TestAccessCommands(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, dir, nil, "access", "set", "residents", "--env", "staging", "--read-groups", "readers,auditors", "--write-groups", "editors"); err != nil {
		t.Fatalf("access set: %v\n%s", err, out)
	}
	out, err := run(t, dir, nil, "access", "list", "--env", "staging")
	if err != nil || !strings.Contains(out, "readers,auditors") || !strings.Contains(out, "editors") {
		t.Fatalf("access list: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "access", "set", "tenancies"); err == nil || !strings.Contains(out, "no domain is called tenancies") {
		t.Fatalf("unknown domain: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "access", "remove", "residents", "--env", "staging"); err != nil {
		t.Fatalf("access remove: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "access", "remove", "residents", "--env", "staging"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("second remove: %v\n%s", err, out)
	}
}

func run(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestValidateReportsEveryProblemWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	specs := filepath.Join(dir, "specs")
	os.Mkdir(specs, 0o755)
	os.WriteFile(filepath.Join(specs, "people.yaml"), []byte(`domain: people
description: People.
owner: {serviceArea: Test, productOwner: test@example.org}
entities:
  - name: person
    plural: people
    key: {name: id, type: uuid, generated: true, pii: none}
    fields:
      - name: dateOfBirth
        type: dat
        pii: personal
`), 0o644)
	out, err := run(t, dir, nil, "validate", "--domains", "specs")
	if err == nil {
		t.Fatalf("validate accepted a bad spec:\n%s", out)
	}
	if !strings.Contains(out, `specs/people.yaml:10: field "dateOfBirth": unknown type "dat"`) {
		t.Fatalf("message lacks file, line and problem:\n%s", out)
	}
	// A bad spec never starts a server.
	out, err = run(t, dir, nil, "serve", "--domains", "specs", "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "unknown type") {
		t.Fatalf("serve started with a bad spec:\n%s", out)
	}
	out, err = run(t, dir, nil, "validate")
	if err != nil || !strings.Contains(out, "/api/v1/residents") {
		t.Fatalf("shipped specs: %v\n%s", err, out)
	}
}

func TestConfigurationPrecedence(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "plinth.yaml"), []byte("environment: staging\nlogLevel: debug\n"), 0o644)
	// The file says staging, which refuses to start without auth.
	out, err := run(t, dir, nil, "serve", "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "environment staging needs authentication: set authSecret") {
		t.Fatalf("file setting not applied:\n%s", out)
	}
	// The environment beats the file; the flag beats the environment.
	out, err = run(t, dir, []string{"PLINTH_ENV=production"}, "serve", "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "environment production") {
		t.Fatalf("environment variable not applied:\n%s", out)
	}
	out, err = run(t, dir, []string{"PLINTH_ENV=production"}, "serve", "--env", "nowhere")
	if err == nil || !strings.Contains(out, `environment "nowhere": use development, staging or production`) {
		t.Fatalf("flag not applied:\n%s", out)
	}
	os.WriteFile(filepath.Join(dir, "plinth.yaml"), []byte("enviroment: staging\n"), 0o644)
	out, err = run(t, dir, nil, "serve")
	if err == nil || !strings.Contains(out, "plinth.yaml") || !strings.Contains(out, "enviroment") {
		t.Fatalf("a misspelt setting was not reported:\n%s", out)
	}
	out, err = run(t, dir, []string{"PLINTH_DEMO_DATA=maybe"}, "serve", "--config", "missing.yaml")
	if err == nil || !strings.Contains(out, "missing.yaml") {
		t.Fatalf("a missing explicit config file was not reported:\n%s", out)
	}
}

func TestUnknownStoreScheme(t *testing.T) {
	out, err := run(t, t.TempDir(), nil, "serve", "--store", "mysql://root:secret@localhost/db")
	if err == nil || !strings.Contains(out, "use sqlite://") || strings.Contains(out, "secret") {
		t.Fatalf("bad store URL: %v\n%s", err, out)
	}
}
