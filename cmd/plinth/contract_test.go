package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plinth-data/plinth/hub"
)

func exitStatus(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestContractCommands runs keygen, sign and verify as a requester and an
// approver would, each on their own key, and checks that a changed
// contract fails.
func TestContractCommands(t *testing.T) {
	dir := t.TempDir()
	pubs := map[string]string{}
	for _, who := range []string{"ann", "bob"} {
		out, err := run(t, dir, nil, "contract", "keygen", who)
		if err != nil {
			t.Fatalf("keygen %s: %v\n%s", who, err, out)
		}
		fi, err := os.Stat(filepath.Join(dir, who+".key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s.key: %v, mode %v; want 0600", who, err, fi.Mode())
		}
		b, _ := os.ReadFile(filepath.Join(dir, who+".pub"))
		pubs[who] = strings.TrimSpace(string(b))
	}
	if out, err := run(t, dir, nil, "contract", "keygen", "ann"); err == nil || !strings.Contains(out, "exists already") {
		t.Fatalf("keygen over an existing key: %v\n%s", err, out)
	}
	draft := hub.SignedContract{Contract: hub.Contract{
		Format: hub.ContractFormat, ID: "c-cli",
		Requester: hub.Party{Subject: "ann", PublicKey: pubs["ann"]},
		Approver:  hub.Party{Subject: "bob", PublicKey: pubs["bob"]},
		API:       "contacts", Environment: "staging", Entities: []string{"contacts"}, Operations: []string{"read"},
		Purpose: "Send reminders", LegalBasis: "public-task", RetentionDays: 7, Consumer: "reminders",
		GrantKind: hub.GrantService, IssuedAt: "2026-01-01T00:00:00Z", ExpiresAt: "2099-01-01T00:00:00Z",
	}}
	b, err := draft.Encode()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c.json")
	os.WriteFile(file, b, 0o644)

	out, err := run(t, dir, nil, "contract", "verify", "c.json")
	if exitStatus(err) != 2 || !strings.Contains(out, "NOT IN FORCE") {
		t.Fatalf("unsigned: status %d\n%s", exitStatus(err), out)
	}
	if out, err := run(t, dir, nil, "contract", "sign", "c.json", "--key", "bob.key", "--role", "requester"); err == nil || !strings.Contains(out, "not the requester's") {
		t.Fatalf("bob signing as requester: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "contract", "sign", "c.json", "--key", "ann.key", "--role", "requester"); err != nil {
		t.Fatalf("sign: %v\n%s", err, out)
	}
	if out, err := run(t, dir, nil, "contract", "verify", "c.json"); exitStatus(err) != 2 || !strings.Contains(out, "approver") {
		t.Fatalf("one signature: status %d\n%s", exitStatus(err), out)
	}
	if out, err := run(t, dir, nil, "contract", "sign", "c.json", "--key", "bob.key", "--role", "approver"); err != nil {
		t.Fatalf("sign: %v\n%s", err, out)
	}
	out, err = run(t, dir, nil, "contract", "verify", "c.json")
	if err != nil || !strings.Contains(out, "valid: both parties signed") {
		t.Fatalf("signed: %v\n%s", err, out)
	}

	signed, _ := os.ReadFile(file)
	for name, changed := range map[string]string{
		"purpose":    strings.Replace(string(signed), "Send reminders", "Send reminderz", 1),
		"expiry":     strings.Replace(string(signed), "2099-01-01", "2199-01-01", 1),
		"whitespace": strings.Replace(string(signed), `"api":"contacts"`, `"api": "contacts"`, 1),
	} {
		if changed == string(signed) {
			t.Fatalf("%s: the change did not apply", name)
		}
		os.WriteFile(file, []byte(changed), 0o644)
		out, err := run(t, dir, nil, "contract", "verify", "c.json")
		if exitStatus(err) != 1 || !strings.Contains(out, "INVALID") {
			t.Fatalf("changed %s: status %d\n%s", name, exitStatus(err), out)
		}
	}
}
