package terraform_test

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/plinth-data/plinth/config"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/secretsmanager"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/terraform"
)

var (
	exampleDir = filepath.Join("..", "deploy", "terraform", "examples", "residents")
	moduleDir  = filepath.Join("..", "deploy", "terraform", "modules", "plinth-domain")
)

// The shipped module and the example root module: every reference
// resolves, the module call gives every required variable, and each
// environment's variable file sets declared variables and all required
// ones.
func TestShippedTerraform(t *testing.T) {
	m, err := terraform.Load(exampleDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Check() {
		t.Error(e)
	}
	for _, env := range []string{"development", "staging", "production"} {
		for _, e := range m.CheckVarFile(filepath.Join(exampleDir, env+".tfvars")) {
			t.Error(e)
		}
	}
}

// What the module promises: the authorizer's caching off, a FIFO topic,
// both functions on provided.al2023 arm64 with the handlers the binary
// knows, settings Plinth reads, an authorizer that cannot write.
func TestModuleKeepsPlinthsRules(t *testing.T) {
	m, err := terraform.Load(moduleDir)
	if err != nil {
		t.Fatal(err)
	}
	literal := func(key, attr string, want cty.Value) {
		t.Helper()
		b := m.Resources[key]
		if b == nil {
			t.Fatalf("no resource %s", key)
		}
		got, ok := terraform.Attribute(b, attr)
		if !ok || !got.RawEquals(want) {
			t.Errorf("%s.%s = %#v, want %#v", key, attr, got, want)
		}
	}
	literal("aws_api_gateway_authorizer.plinth", "authorizer_result_ttl_in_seconds", cty.NumberIntVal(0))
	literal("aws_api_gateway_authorizer.plinth", "type", cty.StringVal("REQUEST"))
	literal("aws_sns_topic.events", "fifo_topic", cty.True)
	literal("aws_sns_topic.events", "content_based_deduplication", cty.False)
	for _, fn := range []string{"plinth", "authorizer"} {
		key := "aws_lambda_function." + fn
		literal(key, "runtime", cty.StringVal("provided.al2023"))
		literal(key, "architectures", cty.TupleVal([]cty.Value{cty.StringVal("arm64")}))
	}
	literal("aws_lambda_function.authorizer", "handler", cty.StringVal("bootstrap"))
	// One function per handler the plinth binary knows (cmd/plinth:
	// lambdaHandlers), the handler its key.
	if keys := objectKeys(m.Locals["plinth_functions"]); !slices.Contains(keys, "api") || !slices.Contains(keys, "background") {
		t.Errorf("plinth_functions: %v", keys)
	}
	if h := m.Resources["aws_lambda_function.plinth"].Body.Attributes["handler"]; h == nil || len(h.Expr.Variables()) != 1 || h.Expr.Variables()[0].RootName() != "each" {
		t.Errorf("the plinth functions' handler is not their key")
	}

	// Every variable the functions get is one Plinth reads.
	known := map[string]bool{secretsmanager.ARNEnv: true}
	ct := reflect.TypeFor[config.Config]()
	for i := range ct.NumField() {
		if env := ct.Field(i).Tag.Get("env"); env != "" {
			known[env] = true
		}
	}
	for _, local := range []string{"function_environment", "authorizer_environment"} {
		keys := objectKeys(m.Locals[local])
		if len(keys) < 4 {
			t.Fatalf("local %s: keys %v", local, keys)
		}
		for _, k := range keys {
			if !known[k] {
				t.Errorf("local %s sets %s, which Plinth does not read", local, k)
			}
		}
	}
	ex, err := terraform.Load(exampleDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"development", "staging", "production"} {
		src, _ := os.ReadFile(filepath.Join(exampleDir, env+".tfvars"))
		for _, k := range regexp.MustCompile(`(?m)^\s+(PLINTH_[A-Z_]+)\s*=`).FindAllStringSubmatch(string(src), -1) {
			if !known[k[1]] {
				t.Errorf("%s.tfvars sets %s, which Plinth does not read", env, k[1])
			}
		}
	}

	// The authorizer only reads.
	pol := m.Data["aws_iam_policy_document.authorizer"]
	for _, a := range actions(pol.Body) {
		if !regexp.MustCompile(`^(dynamodb:(Get|Query|Describe)|secretsmanager:GetSecretValue)`).MatchString(a) {
			t.Errorf("the authorizer's role allows %s", a)
		}
	}

	// The example's account label is the domain spec's.
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Name != "residents" {
			continue
		}
		src, _ := os.ReadFile(filepath.Join(exampleDir, "variables.tf"))
		if !strings.Contains(string(src), `default     = "`+d.Owner.CloudAccount+`"`) {
			t.Errorf("the example's cloud_account_label is not residents.yaml's %q", d.Owner.CloudAccount)
		}
	}
	if len(ex.Modules) != 1 {
		t.Errorf("example modules: %v", ex.Modules)
	}
}

// objectKeys lists the keys of every object constructor in an expression.
func objectKeys(e hcl.Expression) []string {
	var keys []string
	hclsyntax.VisitAll(e.(hclsyntax.Expression), func(n hclsyntax.Node) hcl.Diagnostics {
		if o, ok := n.(*hclsyntax.ObjectConsExpr); ok {
			for _, item := range o.Items {
				keys = append(keys, hcl.ExprAsKeyword(item.KeyExpr))
			}
		}
		return nil
	})
	return keys
}

// actions lists the actions of a policy document's statements, dynamic
// ones included.
func actions(b *hclsyntax.Body) []string {
	var out []string
	for name, a := range b.Attributes {
		if name != "actions" {
			continue
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			continue
		}
		for it := v.ElementIterator(); it.Next(); {
			_, s := it.Element()
			out = append(out, s.AsString())
		}
	}
	for _, blk := range b.Blocks {
		out = append(out, actions(blk.Body)...)
	}
	return out
}

// Broken modules are caught: an unknown variable, resource, local and
// output; a module call missing a required variable or passing an
// unknown one; variable files with unknown or missing variables.
func TestCheckFindsMistakes(t *testing.T) {
	dir := t.TempDir()
	child := filepath.Join(dir, "child")
	os.MkdirAll(child, 0o755)
	write := func(path, src string) {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(child, "main.tf"), `
variable "needed" { type = string }
variable "optional" {
  type    = list(string)
  default = []
}
resource "aws_sns_topic" "t" {
  name = var.needed
  dynamic "tag" {
    for_each = var.optional
    content { key = tag.value }
  }
}
output "arn" { value = aws_sns_topic.t.arn }
`)
	write(filepath.Join(dir, "main.tf"), `
variable "env" { type = string }
locals { name = "x-${var.env}" }
module "m" {
  source  = "./child"
  optional = [local.name, var.nope]
  extra   = 1
}
resource "aws_s3_bucket" "b" {
  bucket = "${local.nam}-${aws_sqs_queue.q.id}-${module.m.arn}-${module.m.url}-${data.aws_region.r.name}"
  lifecycle { ignore_changes = [tags] }
}
`)
	m, err := terraform.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range m.Check() {
		got = append(got, e.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{`no variable "nope"`, `no local "nam"`, `no resource aws_sqs_queue.q`, `module m has no output "url"`,
		`no data source aws_region.r`, `module m has no variable "extra"`, `module m needs variable "needed"`} {
		if !strings.Contains(all, want) {
			t.Errorf("no error %q in:\n%s", want, all)
		}
	}
	if len(got) != 7 {
		t.Errorf("%d errors, want 7:\n%s", len(got), all)
	}
	vars := filepath.Join(dir, "x.tfvars")
	write(vars, "envv = \"staging\"\n")
	errs := m.CheckVarFile(vars)
	if len(errs) != 2 || !strings.Contains(errs[0].Error()+errs[1].Error(), `no variable "envv"`) || !strings.Contains(errs[0].Error()+errs[1].Error(), `required variable "env" is not set`) {
		t.Errorf("variable file: %v", errs)
	}
}
