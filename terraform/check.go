// Package terraform checks Plinth's Terraform (deploy/terraform) without
// Terraform itself: it parses modules with hashicorp/hcl and checks what
// a plan would refuse before touching a provider — references to
// variables, locals, resources, data sources, modules and their outputs
// that do not exist, module calls missing a required variable or passing
// an unknown one, and variable files setting undeclared variables or
// leaving required ones unset. Resource attributes are the provider's and
// are not checked.
package terraform

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Module is one folder of .tf files.
type Module struct {
	Dir       string
	Variables map[string]bool // name → required (no default)
	Locals    map[string]hcl.Expression
	Resources map[string]*hclsyntax.Block // "type.name"
	Data      map[string]*hclsyntax.Block // "type.name"
	Modules   map[string]*hclsyntax.Block
	Outputs   map[string]bool

	refs []reference
}

type reference struct {
	traversal hcl.Traversal
	// scope names what the enclosing block adds: the dynamic block's
	// iterator and for-expression variables are excluded by hcl itself.
	dynamic map[string]bool
}

// Load parses every .tf file of dir.
func Load(dir string) (*Module, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("terraform: no .tf files in %s", dir)
	}
	sort.Strings(files)
	m := &Module{Dir: dir, Variables: map[string]bool{}, Locals: map[string]hcl.Expression{},
		Resources: map[string]*hclsyntax.Block{}, Data: map[string]*hclsyntax.Block{},
		Modules: map[string]*hclsyntax.Block{}, Outputs: map[string]bool{}}
	p := hclparse.NewParser()
	for _, file := range files {
		f, diags := p.ParseHCLFile(file)
		if diags.HasErrors() {
			return nil, fmt.Errorf("terraform: %s", diags.Error())
		}
		if err := m.add(f.Body.(*hclsyntax.Body)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Module) add(body *hclsyntax.Body) error {
	for _, b := range body.Blocks {
		key := strings.Join(b.Labels, ".")
		dup := false
		switch b.Type {
		case "variable":
			_, hasDefault := b.Body.Attributes["default"]
			dup = m.Variables[key] || hasKey(m.Variables, key)
			m.Variables[key] = !hasDefault
		case "locals":
			for name, a := range b.Body.Attributes {
				if _, ok := m.Locals[name]; ok {
					return fmt.Errorf("terraform: %s: local %s is defined twice", a.SrcRange, name)
				}
				m.Locals[name] = a.Expr
			}
		case "resource":
			_, dup = m.Resources[key]
			m.Resources[key] = b
		case "data":
			_, dup = m.Data[key]
			m.Data[key] = b
		case "module":
			_, dup = m.Modules[key]
			m.Modules[key] = b
		case "output":
			dup = m.Outputs[key]
			m.Outputs[key] = true
		}
		if dup {
			return fmt.Errorf("terraform: %s: %s %s is defined twice", b.DefRange(), b.Type, key)
		}
	}
	m.collect(body, nil, "")
	return nil
}

// notExpressions are attributes whose values are not references: a
// variable's type constraint, lifecycle's list of attributes to ignore.
var notExpressions = map[string]map[string]bool{
	"variable":  {"type": true},
	"lifecycle": {"ignore_changes": true},
}

func hasKey(m map[string]bool, k string) bool { _, ok := m[k]; return ok }

// collect gathers every reference in body; a dynamic block's iterator
// (its label, or iterator = …) is in scope in its content.
func (m *Module) collect(body *hclsyntax.Body, dynamic map[string]bool, blockType string) {
	for name, a := range body.Attributes {
		if notExpressions[blockType][name] {
			continue
		}
		for _, t := range a.Expr.Variables() {
			m.refs = append(m.refs, reference{t, dynamic})
		}
	}
	for _, b := range body.Blocks {
		scope := dynamic
		if b.Type == "dynamic" && len(b.Labels) == 1 {
			scope = map[string]bool{b.Labels[0]: true}
			for k := range dynamic {
				scope[k] = true
			}
			if it, ok := b.Body.Attributes["iterator"]; ok {
				scope[hcl.ExprAsKeyword(it.Expr)] = true
			}
		}
		m.collect(b.Body, scope, b.Type)
	}
}

// Check returns every problem of the module and the local modules it
// calls.
func (m *Module) Check() []error {
	var errs []error
	children := map[string]*Module{}
	for name, b := range m.Modules {
		child, err := m.child(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		children[name] = child
		errs = append(errs, checkCall(name, b, child)...)
		for _, e := range child.Check() {
			errs = append(errs, fmt.Errorf("module %s: %w", name, e))
		}
	}
	for _, r := range m.refs {
		if err := m.resolve(r, children); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// child loads the module a module block's local source names.
func (m *Module) child(b *hclsyntax.Block) (*Module, error) {
	a, ok := b.Body.Attributes["source"]
	if !ok {
		return nil, fmt.Errorf("terraform: %s: module %s has no source", b.DefRange(), b.Labels[0])
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || v.Type() != cty.String {
		return nil, fmt.Errorf("terraform: %s: the source must be a string", a.SrcRange)
	}
	src := v.AsString()
	if !strings.HasPrefix(src, "./") && !strings.HasPrefix(src, "../") {
		return nil, fmt.Errorf("terraform: %s: only local module sources are checked (%s)", a.SrcRange, src)
	}
	return Load(filepath.Join(m.Dir, src))
}

var metaArguments = map[string]bool{"source": true, "version": true, "providers": true, "depends_on": true, "count": true, "for_each": true}

// checkCall checks a module block's arguments against the child's
// variables.
func checkCall(name string, b *hclsyntax.Block, child *Module) []error {
	var errs []error
	for arg, a := range b.Body.Attributes {
		if !metaArguments[arg] && !hasKey(child.Variables, arg) {
			errs = append(errs, fmt.Errorf("terraform: %s: module %s has no variable %q", a.SrcRange, name, arg))
		}
	}
	for _, v := range slices.Sorted(maps.Keys(child.Variables)) {
		if _, given := b.Body.Attributes[v]; child.Variables[v] && !given {
			errs = append(errs, fmt.Errorf("terraform: %s: module %s needs variable %q", b.DefRange(), name, v))
		}
	}
	return errs
}

// builtins are the roots Terraform itself provides.
var builtins = map[string]bool{"path": true, "terraform": true, "count": true, "each": true, "self": true}

func (m *Module) resolve(r reference, children map[string]*Module) error {
	t := r.traversal
	root := t.RootName()
	at := t.SourceRange()
	name := func(i int) string {
		if i >= len(t) {
			return ""
		}
		if a, ok := t[i].(hcl.TraverseAttr); ok {
			return a.Name
		}
		return ""
	}
	switch {
	case builtins[root] || r.dynamic[root]:
		return nil
	case root == "var":
		if !hasKey(m.Variables, name(1)) {
			return fmt.Errorf("terraform: %s: no variable %q", at, name(1))
		}
	case root == "local":
		if _, ok := m.Locals[name(1)]; !ok {
			return fmt.Errorf("terraform: %s: no local %q", at, name(1))
		}
	case root == "data":
		if _, ok := m.Data[name(1)+"."+name(2)]; !ok {
			return fmt.Errorf("terraform: %s: no data source %s.%s", at, name(1), name(2))
		}
	case root == "module":
		child, ok := children[name(1)]
		if _, declared := m.Modules[name(1)]; !declared {
			return fmt.Errorf("terraform: %s: no module %q", at, name(1))
		}
		if ok && name(2) != "" && !child.Outputs[name(2)] {
			return fmt.Errorf("terraform: %s: module %s has no output %q", at, name(1), name(2))
		}
	default:
		if _, ok := m.Resources[root+"."+name(1)]; !ok {
			return fmt.Errorf("terraform: %s: no resource %s.%s", at, root, name(1))
		}
	}
	return nil
}

// CheckVarFile checks a .tfvars file against the module's variables:
// each it sets is declared, and every required one is set.
func (m *Module) CheckVarFile(file string) []error {
	src, err := os.ReadFile(file)
	if err != nil {
		return []error{err}
	}
	f, diags := hclsyntax.ParseConfig(src, file, hcl.InitialPos)
	if diags.HasErrors() {
		return []error{fmt.Errorf("terraform: %s", diags.Error())}
	}
	attrs := f.Body.(*hclsyntax.Body).Attributes
	var errs []error
	for name, a := range attrs {
		if !hasKey(m.Variables, name) {
			errs = append(errs, fmt.Errorf("terraform: %s: no variable %q in %s", a.SrcRange, name, m.Dir))
		}
		if _, diags := a.Expr.Value(nil); diags.HasErrors() {
			errs = append(errs, fmt.Errorf("terraform: %s: a variable file holds values only: %s", a.SrcRange, diags.Error()))
		}
	}
	for _, v := range slices.Sorted(maps.Keys(m.Variables)) {
		if _, set := attrs[v]; m.Variables[v] && !set {
			errs = append(errs, fmt.Errorf("terraform: %s: required variable %q is not set", file, v))
		}
	}
	return errs
}

// Attribute is the literal value of a block's attribute, as a plan would
// see it before any reference is known; ok is false when it is absent or
// not a literal.
func Attribute(b *hclsyntax.Block, name string) (cty.Value, bool) {
	a, found := b.Body.Attributes[name]
	if !found {
		return cty.NilVal, false
	}
	v, diags := a.Expr.Value(nil)
	return v, !diags.HasErrors()
}
