package docscheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// LoadMetrics parses the Go files (tests left out) below the given
// directories (relative to root) and returns every Prometheus collector
// named livemigrate_*, as prometheus.NewX(prometheus.XOpts{Name: ...},
// []string{labels...}) declares it: its name and its labels, sorted.
func LoadMetrics(root string, dirs ...string) (map[string][]string, error) {
	out := map[string][]string{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		real, err := filepath.EvalSymlinks(filepath.Join(root, dir))
		if err != nil {
			return nil, err
		}
		err = filepath.WalkDir(real, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			af, err := parser.ParseFile(fset, p, nil, 0)
			if err != nil {
				return fmt.Errorf("parsing %s: %w", p, err)
			}
			ast.Inspect(af, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !strings.HasPrefix(sel.Sel.Name, "New") {
					return true
				}
				name := optsName(call.Args[0])
				if !strings.HasPrefix(name, "livemigrate_") {
					return true
				}
				labels := []string{}
				if len(call.Args) > 1 {
					labels = stringList(call.Args[1])
				}
				slices.Sort(labels)
				out[name] = labels
				return true
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// optsName returns the Name of a prometheus.XOpts composite literal.
func optsName(e ast.Expr) string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return ""
	}
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
			if v, ok := kv.Value.(*ast.BasicLit); ok && v.Kind == token.STRING {
				s, _ := strconv.Unquote(v.Value)
				return s
			}
		}
	}
	return ""
}

// stringList returns the string literals of a []string{...} literal.
func stringList(e ast.Expr) []string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	var out []string
	for _, el := range lit.Elts {
		if v, ok := el.(*ast.BasicLit); ok && v.Kind == token.STRING {
			s, _ := strconv.Unquote(v.Value)
			out = append(out, s)
		}
	}
	return out
}

var (
	metricNameRE = regexp.MustCompile(`^livemigrate_[a-z0-9_]*[a-z0-9]$`)
	// metricRowRE is a table row whose first cell is a metric name.
	metricRowRE = regexp.MustCompile("(?m)^\\|\\s*`(livemigrate_[a-z0-9_]+)`\\s*\\|([^\n]*)\\|\\s*$")
	labelNameRE = regexp.MustCompile(`^[a-z_]+$`)
)

// checkMetrics reports a metric named in a code span that no collector
// declares, and a table row of a metric whose second cell names other
// labels (the backquoted label names, `label` or `label="value"`) than the
// collector has.
func checkMetrics(file, text string, metrics map[string][]string) []Problem {
	var out []Problem
	code, _ := codeRegions(text)
	for _, r := range code {
		if r.block || !metricNameRE.MatchString(r.text) {
			continue
		}
		if _, ok := metrics[r.text]; !ok {
			out = append(out, Problem{File: file, Line: lineOf(text, r.off),
				Msg: fmt.Sprintf("metric %s: no collector of the code has this name", r.text)})
		}
	}
	for _, m := range metricRowRE.FindAllStringSubmatchIndex(text, -1) {
		name, cell := text[m[2]:m[3]], text[m[4]:m[5]]
		want, ok := metrics[name]
		if !ok {
			continue // reported above
		}
		documented := []string{}
		for _, s := range codeSpanRE.FindAllStringSubmatch(cell, -1) {
			label, _, _ := strings.Cut(s[1], "=")
			if labelNameRE.MatchString(label) && !slices.Contains(documented, label) {
				documented = append(documented, label)
			}
		}
		slices.Sort(documented)
		if !slices.Equal(documented, want) {
			out = append(out, Problem{File: file, Line: lineOf(text, m[0]),
				Msg: fmt.Sprintf("metric %s: the table names labels %v, the code has %v", name, documented, want)})
		}
	}
	return out
}
