package plinth_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The entry points (the HTTP API and the Lambda adapters) reach
// transactions, the outbox and the audit trail only through the write path
// (plinth.Writer), and link no store driver or message bus.
func TestEntryPointsWriteOnlyThroughTheWritePath(t *testing.T) {
	forbiddenDeps := []string{
		"github.com/nats-io/", "github.com/jackc/pgx", "modernc.org/sqlite",
		"github.com/plinth-data/plinth/events", "github.com/plinth-data/plinth/nats",
		"github.com/plinth-data/plinth/sqlite", "github.com/plinth-data/plinth/postgres",
		"github.com/plinth-data/plinth/audit",
	}
	// Names only the write path may use: opening a transaction, or writing
	// to the outbox or the audit trail inside one.
	forbiddenNames := map[string]bool{"Tx": true, "EventTx": true, "AuditTx": true,
		"AppendEvent": true, "AppendAudit": true, "BuildEvent": true, "UpsertVia": true}
	for _, pkg := range []string{"http", "lambda", "hub"} {
		out, err := exec.Command("go", "list", "-deps", "./"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, bad := range forbiddenDeps {
				if strings.HasPrefix(dep, bad) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
		files, _ := filepath.Glob(filepath.Join(pkg, "*.go"))
		fset := token.NewFileSet()
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if ok && forbiddenNames[sel.Sel.Name] {
					t.Errorf("%s uses %s: only the write path may", fset.Position(sel.Pos()), sel.Sel.Name)
				}
				if ok && sel.Sel.Name == "Write" {
					if x, ok := sel.X.(*ast.SelectorExpr); ok && strings.Contains(strings.ToLower(x.Sel.Name), "store") {
						t.Errorf("%s opens a store transaction: only the write path may", fset.Position(sel.Pos()))
					}
				}
				return true
			})
		}
	}
}

// The entry points speak to the authorizer through the domain language
// (plinth.Authorizer, plinth.Decision …), so they do not link package auth
// and a Lambda adapter or a test can bring any authorizer.
func TestEntryPointsUseTheAuthorizerThroughTheDomainLanguage(t *testing.T) {
	for _, pkg := range []string{"http", "lambda", "hub"} {
		out, err := exec.Command("go", "list", "-deps", "./"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "github.com/plinth-data/plinth/auth" {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
