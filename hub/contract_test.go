package hub

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gowebpki/jcs"

	"github.com/plinth-data/plinth/plinthtest"
)

type signer struct {
	priv ed25519.PrivateKey
	pub  string
}

func newSigner(t *testing.T) signer {
	t.Helper()
	pemBytes, pub, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return signer{priv, pub}
}

func sampleContract(req, appr signer) Contract {
	return Contract{
		Format: ContractFormat, ID: "c-1", Request: "r-1",
		Requester: Party{Subject: "ann", Email: "ann@example.gov.uk", Name: "Ann", PublicKey: req.pub},
		Approver:  Party{Subject: "bob", Email: "bob@example.gov.uk", Name: "Bob", PublicKey: appr.pub},
		API:       "residents", Environment: "staging",
		Entities: []string{"residents"}, Operations: []string{"read", "report"},
		Purpose: "Check eligibility for housing benefit", LegalBasis: "public-task",
		SpecialCondition: "substantial-public-interest", RetentionDays: 30,
		Consumer: "benefits-listener", GrantKind: GrantService,
		IssuedAt: "2026-01-01T00:00:00Z", ExpiresAt: "2026-07-01T00:00:00Z",
	}
}

func signedFile(t *testing.T) (SignedContract, []byte, signer, signer) {
	t.Helper()
	req, appr := newSigner(t), newSigner(t)
	s := SignedContract{Contract: sampleContract(req, appr)}
	if err := s.Sign(RoleRequester, req.priv); err != nil {
		t.Fatal(err)
	}
	if err := s.Sign(RoleApprover, appr.priv); err != nil {
		t.Fatal(err)
	}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return s, b, req, appr
}

func TestSignedContractVerifies(t *testing.T) {
	_, b, _, _ := signedFile(t)
	s, err := ParseContractFile(b)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Verify()
	if err != nil || !v.Complete || len(v.Signed) != 2 {
		t.Fatalf("verify = %+v, %v; want both signatures valid", v, err)
	}
}

func TestContractIsCanonicalJSON(t *testing.T) {
	_, b, _, _ := signedFile(t)
	body := bytes.TrimSuffix(b, []byte("\n"))
	// RFC 8785: keys sorted by UTF-16 code units, no whitespace.
	if !bytes.HasPrefix(body, []byte(`{"contract":{"api":"residents","approver":{`)) {
		t.Fatalf("keys not sorted: %.80s", body)
	}
	again, _ := jcs.Transform(body)
	if !bytes.Equal(again, body) {
		t.Fatal("Encode is not canonical")
	}
}

// Every leaf of a signed contract, changed and written back canonically,
// must make verification fail.
func TestTamperingWithAnyFieldIsDetected(t *testing.T) {
	_, b, _, _ := signedFile(t)
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	paths := leaves(doc, "")
	if len(paths) < 25 {
		t.Fatalf("only %d leaves found: %v", len(paths), paths)
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			var d map[string]any
			_ = json.Unmarshal(b, &d)
			tamper(d, strings.Split(strings.TrimPrefix(p, "/"), "/"))
			raw, _ := json.Marshal(d)
			canon, err := jcs.Transform(raw)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseContractFile(canon)
			if err == nil {
				var v Verification
				v, err = s.Verify()
				if err == nil && v.Complete {
					t.Fatalf("changing %s went unnoticed", p)
				}
			}
		})
	}
}

// leaves lists the JSON pointer of every string, number and boolean.
func leaves(v any, at string) []string {
	switch x := v.(type) {
	case map[string]any:
		var out []string
		for k, c := range x {
			out = append(out, leaves(c, at+"/"+k)...)
		}
		return out
	case []any:
		var out []string
		for i, c := range x {
			out = append(out, leaves(c, fmt.Sprintf("%s/%d", at, i))...)
		}
		return out
	}
	return []string{at}
}

// tamper changes the value at path the least it can: one character, one unit.
func tamper(v any, path []string) {
	var parent any = v
	for _, k := range path[:len(path)-1] {
		parent = step(parent, k)
	}
	last := path[len(path)-1]
	change := func(old any) any {
		switch o := old.(type) {
		case string:
			if o == "" {
				return "x"
			}
			r := []rune(o)
			r[len(r)-1]++
			return string(r)
		case float64:
			return o + 1
		case bool:
			return !o
		}
		return "x"
	}
	switch p := parent.(type) {
	case map[string]any:
		p[last] = change(p[last])
	case []any:
		var i int
		fmt.Sscan(last, &i)
		p[i] = change(p[i])
	}
}

func step(v any, k string) any {
	switch p := v.(type) {
	case map[string]any:
		return p[k]
	case []any:
		var i int
		fmt.Sscan(k, &i)
		return p[i]
	}
	return nil
}

func TestNonCanonicalInputIsRefused(t *testing.T) {
	_, b, _, _ := signedFile(t)
	body := string(bytes.TrimSuffix(b, []byte("\n")))
	var indented bytes.Buffer
	_ = json.Indent(&indented, []byte(body), "", "  ")
	cases := map[string]string{
		"indented":          indented.String(),
		"space after colon": strings.Replace(body, `"api":"residents"`, `"api": "residents"`, 1),
		"keys reordered":    strings.Replace(body, `{"contract":{"api":"residents",`, `{"contract":{"entities":["residents"],"api":"residents",`, 1),
		"escaped letter":    strings.Replace(body, `"api":"residents"`, `"api":"r\u0065sidents"`, 1),
		"duplicate key":     strings.Replace(body, `"api":"residents"`, `"api":"residents","api":"residents"`, 1),
		"trailing data":     body + "{}",
		"two newlines":      body + "\n\n",
		"unknown field":     strings.Replace(body, `{"contract":{"api"`, `{"contract":{"aaa":1,"api"`, 1),
		"explicit empty":    strings.Replace(body, `"api":"residents"`, `"api":"residents","approver":{}`, 1),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if in == body {
				t.Fatal("the case does not change the input")
			}
			if _, err := ParseContractFile([]byte(in)); err == nil {
				t.Fatalf("accepted: %.120s", in)
			}
		})
	}
	if _, err := ParseContractFile([]byte(body)); err != nil {
		t.Fatalf("the canonical form without a newline is refused: %v", err)
	}
}

func TestSignaturesMustBeThePartiesOwn(t *testing.T) {
	req, appr, other := newSigner(t), newSigner(t), newSigner(t)
	s := SignedContract{Contract: sampleContract(req, appr)}
	if err := s.Sign(RoleApprover, req.priv); err == nil {
		t.Fatal("the requester's key signed as approver")
	}
	if err := s.Sign(RoleRequester, other.priv); err == nil {
		t.Fatal("a stranger's key signed as requester")
	}
	if err := s.Sign("auditor", req.priv); err == nil {
		t.Fatal("an unknown role signed")
	}
	if err := s.Sign(RoleRequester, req.priv); err != nil {
		t.Fatal(err)
	}
	v, err := s.Verify()
	if err != nil || v.Complete || len(v.Missing) != 1 || v.Missing[0] != RoleApprover {
		t.Fatalf("one signature: %+v, %v; want approver missing", v, err)
	}
	// A signature copied from the requester's slot to the approver's fails.
	forged := s
	forged.Signatures = append([]Signature{}, s.Signatures...)
	forged.Signatures = append(forged.Signatures, Signature{Role: RoleApprover, Signature: s.Signatures[0].Signature})
	if _, err := forged.Verify(); err == nil {
		t.Fatal("the requester's signature passed as the approver's")
	}
	// Twice the same role.
	twice := s
	twice.Signatures = []Signature{s.Signatures[0], s.Signatures[0]}
	if _, err := twice.Verify(); err == nil {
		t.Fatal("a role signing twice passed")
	}
	if err := (&s).AddSignature(Signature{Role: RoleApprover, Signature: s.Signatures[0].Signature}); err == nil {
		t.Fatal("AddSignature took a signature that does not verify")
	}
}

func TestContractValidation(t *testing.T) {
	req, appr := newSigner(t), newSigner(t)
	cases := map[string]func(*Contract){
		"format":           func(c *Contract) { c.Format = "v0" },
		"no entities":      func(c *Contract) { c.Entities = nil },
		"bad operation":    func(c *Contract) { c.Operations = []string{"delete"} },
		"legal basis":      func(c *Contract) { c.LegalBasis = "because" },
		"article 9":        func(c *Contract) { c.SpecialCondition = "because" },
		"retention":        func(c *Contract) { c.RetentionDays = 0 },
		"grant kind":       func(c *Contract) { c.GrantKind = "all" },
		"group missing":    func(c *Contract) { c.GrantKind = GrantGroup },
		"expiry order":     func(c *Contract) { c.ExpiresAt = c.IssuedAt },
		"expiry not utc":   func(c *Contract) { c.ExpiresAt = "2026-07-01T00:00:00+01:00" },
		"environment":      func(c *Contract) { c.Environment = "test" },
		"approver key":     func(c *Contract) { c.Approver.PublicKey = "abc" },
		"requester absent": func(c *Contract) { c.Requester.Subject = "" },
	}
	for name, breakIt := range cases {
		c := sampleContract(req, appr)
		breakIt(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := sampleContract(req, appr)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ds := plinthtest.Domains(t)
	if err := c.CheckAgainst(ds); err != nil {
		t.Fatal(err)
	}
	c.SpecialCondition = ""
	if err := c.CheckAgainst(ds); err == nil || !strings.Contains(err.Error(), "Article 9") {
		t.Fatalf("residents hold special fields; no Article 9 condition gave %v", err)
	}
	c.Entities = []string{"nobody"}
	if err := c.CheckAgainst(ds); err == nil {
		t.Fatal("an unknown entity passed")
	}
}

func TestShownStatusExpires(t *testing.T) {
	s, _, _, _ := signedFile(t)
	r := &Request{Status: StatusInForce, Contract: &s}
	exp := s.Contract.Expiry()
	if got := r.Shown(exp.Add(-time.Second)); got != StatusInForce {
		t.Fatalf("before expiry: %s", got)
	}
	if got := r.Shown(exp); got != StatusExpired {
		t.Fatalf("at expiry: %s", got)
	}
	r.Status = StatusRevoked
	if got := r.Shown(exp.Add(time.Hour)); got != StatusRevoked {
		t.Fatalf("revoked: %s", got)
	}
}
