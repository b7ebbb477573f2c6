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
	cmd := exec.Command(binary, "serve", "--listen", "127.0.0.1:0", "--demo-records", "500")
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	base := ""
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	urlRE := regexp.MustCompile(`curl '(http://127\.0\.0\.1:\d+)/api/v1/healthcheck/ping'`)
	deadline := time.After(60 * time.Second)
	for base == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("serve exited before printing its URLs:\n%s", stderr.String())
			}
			if m := urlRE.FindStringSubmatch(line); m != nil {
				base = m[1]
			}
		case <-deadline:
			t.Fatalf("serve printed no URLs within 60s:\n%s", stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()

	res, err := http.Get(base + "/api/v1/residents?limit=3")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Residents  []map[string]any `json:"residents"`
		NextCursor *string          `json:"nextCursor"`
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if err := json.Unmarshal(body, &page); err != nil || len(page.Residents) != 3 || page.NextCursor == nil {
		t.Fatalf("demo data list: %v %s", err, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "plinth-data", "plinth.db")); err != nil {
		t.Fatalf("no SQLite file in ./plinth-data: %v", err)
	}
	res, err = http.Get(base + "/api/v1/contacts?limit=1")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("contacts: %v %v", err, res)
	}
	res.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve did not exit cleanly on SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop within 20s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Fatalf("no shutdown log line:\n%s", stderr.String())
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
	if err == nil || !strings.Contains(out, "environment staging needs authentication") {
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
