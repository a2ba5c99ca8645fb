// Package docscheck checks what the project's Markdown docs say against the
// tree, for what can be checked mechanically:
//
//   - phase lists (arrow chains such as "Pending → Planning → PreCopy",
//     numbered lists of bold phase names, tables whose first column is
//     "phase") name only values of one API phase enum, in that enum's order;
//   - every directory under cmd/ is named in the README's layout table and
//     in docs/architecture.md;
//   - every `make <target>` in a code span or code block is a Makefile target;
//   - every relative Markdown link, and every code span that is a path in the
//     repository (it starts with a top-level directory of the tree), names a
//     file or directory that exists (a path may be shortened to the tail of
//     a longer one, as `internal/fswalk`);
//   - every metric named in a code span (`livemigrate_...`) is a collector
//     of the code, and a table row of a metric names the labels it has.
//
// Check returns the problems found, each with the file and line; it never
// writes. The package's test runs it on the repository, so `make test` fails
// when a doc goes stale.
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
	"sort"
	"strconv"
	"strings"
)

// Problem is one mismatch between a doc and the tree.
type Problem struct {
	File string // relative to the repository root
	Line int    // 1-based; 0 when the problem is about the whole file
	Msg  string
}

func (p Problem) String() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}

// Enum is one phase type of the API and its values in their order.
type Enum struct {
	Name   string   // the Go type, e.g. LiveMigrationPhase
	Values []string // in order
}

func (e Enum) index(v string) int {
	for i, x := range e.Values {
		if x == v {
			return i
		}
	}
	return -1
}

// Config says what to check.
type Config struct {
	// Root is the repository root.
	Root string
	// Docs are the Markdown files to check, relative to Root.
	Docs []string
	// Enums are the phase enums, the first preferred when a list fits several.
	Enums []Enum
	// Layout lists the files (relative to Root) that must name every cmd/*
	// directory as `cmd/<name>`.
	Layout []string
	// MetricDirs are the directories (relative to Root) whose Go code
	// declares the metrics the docs name; none: metrics are not checked.
	MetricDirs []string
}

// DefaultDocs returns the docs a newcomer reads: README.md, CONTRIBUTING.md
// and docs/*.md, sorted.
func DefaultDocs(root string) ([]string, error) {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	out := []string{"README.md", "CONTRIBUTING.md"}
	for _, d := range docs {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			return nil, err
		}
		out = append(out, filepath.ToSlash(rel))
	}
	sort.Strings(out[2:])
	return out, nil
}

// LoadEnums parses the Go files of the given directories (relative to root)
// and returns every string type whose name ends in "Phase" with its
// constants in declaration order, sorted by type name.
func LoadEnums(root string, dirs ...string) ([]Enum, error) {
	byType := map[string]*Enum{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") || strings.HasPrefix(filepath.Base(f), "zz_generated") {
				continue
			}
			af, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				return nil, fmt.Errorf("parsing %s: %w", f, err)
			}
			for _, d := range af.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, s := range gd.Specs {
					vs := s.(*ast.ValueSpec)
					id, ok := vs.Type.(*ast.Ident)
					if !ok || !strings.HasSuffix(id.Name, "Phase") || len(vs.Values) != len(vs.Names) {
						continue
					}
					for _, v := range vs.Values {
						lit, ok := v.(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							continue
						}
						val, err := strconv.Unquote(lit.Value)
						if err != nil {
							return nil, fmt.Errorf("%s: %w", fset.Position(lit.Pos()), err)
						}
						e := byType[id.Name]
						if e == nil {
							e = &Enum{Name: id.Name}
							byType[id.Name] = e
						}
						e.Values = append(e.Values, val)
					}
				}
			}
		}
	}
	out := make([]Enum, 0, len(byType))
	for _, e := range byType {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// MakeTargets returns the targets a Makefile defines.
func MakeTargets(makefile string) (map[string]bool, error) {
	b, err := os.ReadFile(makefile)
	if err != nil {
		return nil, err
	}
	targets := map[string]bool{}
	rule := regexp.MustCompile(`^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:([^=]|$)`)
	for _, line := range strings.Split(string(b), "\n") {
		m := rule.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(m[1], ".") {
			continue
		}
		for _, t := range strings.Fields(m[1]) {
			targets[t] = true
		}
	}
	return targets, nil
}

// Check runs every check on c.Docs and returns the problems found, in file
// and line order.
func Check(c Config) ([]Problem, error) {
	targets, err := MakeTargets(filepath.Join(c.Root, "Makefile"))
	if err != nil {
		return nil, err
	}
	cmds, err := commands(c.Root)
	if err != nil {
		return nil, err
	}
	topLevel, err := topLevelNames(c.Root)
	if err != nil {
		return nil, err
	}
	tree, err := treePaths(c.Root)
	if err != nil {
		return nil, err
	}
	var metrics map[string][]string
	if len(c.MetricDirs) > 0 {
		if metrics, err = LoadMetrics(c.Root, c.MetricDirs...); err != nil {
			return nil, err
		}
	}
	var out []Problem
	for _, doc := range c.Docs {
		b, err := os.ReadFile(filepath.Join(c.Root, doc))
		if err != nil {
			return nil, err
		}
		text := string(b)
		out = append(out, PhaseLists(doc, text, c.Enums)...)
		out = append(out, checkMakeTargets(doc, text, targets)...)
		out = append(out, checkPaths(c.Root, doc, text, topLevel, tree)...)
		if metrics != nil {
			out = append(out, checkMetrics(doc, text, metrics)...)
		}
	}
	for _, doc := range c.Layout {
		b, err := os.ReadFile(filepath.Join(c.Root, doc))
		if err != nil {
			return nil, err
		}
		block, line := layoutBlock(string(b))
		if block == "" {
			out = append(out, Problem{File: doc, Msg: "has no layout (a table whose first column is \"path\", or a \"- **cmd/**\" item) to name the binaries in"})
			continue
		}
		for _, cmd := range cmds {
			if !strings.Contains(block, "`cmd/"+cmd+"`") && !strings.Contains(block, "`"+cmd+"`") {
				out = append(out, Problem{File: doc, Line: line, Msg: fmt.Sprintf("the layout does not name cmd/%s (write `cmd/%s` with what it is)", cmd, cmd)})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	return slices.Compact(out), nil
}

// layoutBlock returns the first table of text whose header's first cell is
// "path", else the list item that starts with "- **cmd/**", and its line.
func layoutBlock(text string) (string, int) {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if cell, ok := firstCell(l); ok && strings.EqualFold(cell, "path") {
			j := i
			for j < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[j]), "|") {
				j++
			}
			return strings.Join(lines[i:j], "\n"), i + 1
		}
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "- **cmd/**") {
			j := i + 1
			for j < len(lines) && strings.HasPrefix(lines[j], "  ") {
				j++
			}
			return strings.Join(lines[i:j], "\n"), i + 1
		}
	}
	return "", 0
}

// commands returns the directories under cmd/.
func commands(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// topLevelNames returns the names at the repository root that a path in a
// doc may start with (hidden ones and bin/, which is built, left out).
func topLevelNames(root string) (map[string]bool, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || n == "bin" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(root, n)); err == nil && fi.IsDir() {
			out[n] = true
		}
	}
	return out, nil
}

// treePaths returns every file and directory of the tree below root,
// relative to it (hidden ones and bin/ left out; a symbolic link at the
// top level is followed).
func treePaths(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		top := e.Name()
		if strings.HasPrefix(top, ".") || top == "bin" {
			continue
		}
		real, err := filepath.EvalSymlinks(filepath.Join(root, top))
		if err != nil {
			return nil, err
		}
		err = filepath.WalkDir(real, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(real, p)
			if err != nil {
				return err
			}
			if strings.HasPrefix(d.Name(), ".") && rel != "." {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			out = append(out, filepath.ToSlash(filepath.Join(top, rel)))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// lineOf returns the 1-based line of byte offset off in text.
func lineOf(text string, off int) int {
	return strings.Count(text[:off], "\n") + 1
}

var (
	identRE     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)
	wordAfterRE = regexp.MustCompile("^[\\s*`]*([A-Za-z][A-Za-z0-9]*)")
	wordBeforRE = regexp.MustCompile("([A-Za-z][A-Za-z0-9]*)[\\s*`]*$")
	numberedRE  = regexp.MustCompile(`(?m)^[ \t]*(\d+)\.[ \t]+\*\*([^*]+)\*\*`)
)

// chainItem is one name of a phase list and where it is.
type chainItem struct {
	name string
	line int
}

// PhaseLists checks the phase lists of one doc against the enums.
func PhaseLists(file, text string, enums []Enum) []Problem {
	var out []Problem
	for _, chain := range arrowChains(text) {
		out = append(out, checkChain(file, chain, enums)...)
	}
	for _, chain := range numberedLists(text) {
		out = append(out, checkChain(file, chain, enums)...)
	}
	for _, chain := range phaseTables(text) {
		out = append(out, checkChain(file, chain, enums)...)
	}
	return out
}

// arrowChains returns the runs of names joined by "→" where every name
// between two arrows is one word, e.g. "Pending → Planning → PreCopy".
func arrowChains(text string) [][]chainItem {
	const arrow = "→"
	var chains [][]chainItem
	var cur []chainItem
	prevEnd := -1 // end of the previous arrow, -1 if none
	for {
		start := prevEnd
		if start < 0 {
			start = 0
		}
		i := strings.Index(text[start:], arrow)
		if i < 0 {
			break
		}
		at := start + i
		before := text[start:at]
		if prevEnd >= 0 {
			seg := strings.Trim(before, " \t\n*`")
			if !identRE.MatchString(seg) {
				if len(cur) > 1 {
					chains = append(chains, cur)
				}
				cur = nil
			}
		}
		if cur == nil {
			m := wordBeforRE.FindStringSubmatchIndex(before)
			if m == nil {
				prevEnd = at + len(arrow)
				continue
			}
			cur = []chainItem{{name: before[m[2]:m[3]], line: lineOf(text, start+m[2])}}
		}
		after := text[at+len(arrow):]
		m := wordAfterRE.FindStringSubmatchIndex(after)
		if m == nil {
			if len(cur) > 1 {
				chains = append(chains, cur)
			}
			cur = nil
		} else {
			cur = append(cur, chainItem{name: after[m[2]:m[3]], line: lineOf(text, at+len(arrow)+m[2])})
		}
		prevEnd = at + len(arrow)
	}
	if len(cur) > 1 {
		chains = append(chains, cur)
	}
	return chains
}

// numberedLists returns, for every numbered list whose items start with a
// bold name ("1. **Pending → Planning** — ..."), the names in order; a bold
// text that is not one word is kept whole, so that it is reported when the
// list is a phase list.
func numberedLists(text string) [][]chainItem {
	var chains [][]chainItem
	var cur []chainItem
	want := 1
	for _, m := range numberedRE.FindAllStringSubmatchIndex(text, -1) {
		n, _ := strconv.Atoi(text[m[2]:m[3]])
		if n != want {
			if len(cur) > 1 {
				chains = append(chains, cur)
			}
			cur, want = nil, 1
			if n != 1 {
				continue
			}
		}
		want++
		line := lineOf(text, m[4])
		for _, name := range strings.Split(text[m[4]:m[5]], "→") {
			cur = append(cur, chainItem{name: strings.TrimSpace(name), line: line})
		}
	}
	if len(cur) > 1 {
		chains = append(chains, cur)
	}
	return chains
}

// phaseTables returns the first column of every table whose header's first
// cell is "phase".
func phaseTables(text string) [][]chainItem {
	var chains [][]chainItem
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		if cell, ok := firstCell(lines[i]); !ok || !strings.EqualFold(cell, "phase") {
			continue
		}
		var chain []chainItem
		j := i + 2 // skip the delimiter row
		for ; j < len(lines); j++ {
			cell, ok := firstCell(lines[j])
			if !ok {
				break
			}
			chain = append(chain, chainItem{name: strings.Trim(cell, "`*"), line: j + 1})
		}
		if len(chain) > 1 {
			chains = append(chains, chain)
		}
		i = j
	}
	return chains
}

func firstCell(line string) (string, bool) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") {
		return "", false
	}
	cells := strings.Split(line[1:], "|")
	return strings.TrimSpace(cells[0]), true
}

// checkChain reports a chain that is a phase list (two or more of its names
// are values of one enum) and names something that is not a value of that
// enum, or names its values out of order. A chain that fits any enum whole
// and in order is fine.
func checkChain(file string, chain []chainItem, enums []Enum) []Problem {
	best, bestN := -1, 1
	for i, e := range enums {
		n := 0
		for _, c := range chain {
			if e.index(c.name) >= 0 {
				n++
			}
		}
		if n == len(chain) && inOrder(chain, e) {
			return nil
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	if best < 0 {
		return nil
	}
	e := enums[best]
	var out []Problem
	last := -1
	for _, c := range chain {
		i := e.index(c.name)
		switch {
		case i < 0:
			out = append(out, Problem{File: file, Line: c.line, Msg: fmt.Sprintf("%q is not a %s in a list of them; the values, in order, are %s", c.name, e.Name, strings.Join(e.Values, ", "))})
		case i <= last:
			out = append(out, Problem{File: file, Line: c.line, Msg: fmt.Sprintf("%s %s is listed after %s; the order is %s", e.Name, c.name, e.Values[last], strings.Join(e.Values, ", "))})
		default:
			last = i
		}
	}
	return out
}

func inOrder(chain []chainItem, e Enum) bool {
	last := -1
	for _, c := range chain {
		i := e.index(c.name)
		if i <= last {
			return false
		}
		last = i
	}
	return true
}

var (
	fenceRE        = regexp.MustCompile("(?m)^[ \t]*```")
	codeSpanRE     = regexp.MustCompile("`([^`\n]+)`")
	makeRE         = regexp.MustCompile(`(?:^|[\s;&|(])make((?:[ \t]+[A-Za-z0-9_.-]+(?:=(?:"[^"]*"|'[^']*'|\S*))?)+)`)
	shellCommentRE = regexp.MustCompile(`(?m)(^|[ \t])#.*$`)
	makeArgRE      = regexp.MustCompile(`[ \t]+([A-Za-z0-9_.-]+)(=(?:"[^"]*"|'[^']*'|\S*))?`)
	linkRE         = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	refLinkRE      = regexp.MustCompile(`(?m)^[ \t]*\[[^\]]+\]:[ \t]*(\S+)`)
	schemeRE       = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	goSymbolRE     = regexp.MustCompile(`\.[A-Z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)?$`)
	braceRE        = regexp.MustCompile(`\{([^{}]*)\}`)
)

// codeRegions returns the text of every fenced code block and code span with
// its offset in text, and the prose (text outside them, code blanked out
// with spaces so offsets are kept).
func codeRegions(text string) (code []region, prose string) {
	p := []byte(text)
	fences := fenceRE.FindAllStringIndex(text, -1)
	for i := 0; i+1 < len(fences); i += 2 {
		start, end := fences[i][0], fences[i+1][1]
		code = append(code, region{text: text[start:end], off: start, block: true})
		blank(p, start, end)
	}
	for _, m := range codeSpanRE.FindAllStringSubmatchIndex(string(p), -1) {
		code = append(code, region{text: text[m[2]:m[3]], off: m[2]})
		blank(p, m[0], m[1])
	}
	return code, string(p)
}

type region struct {
	text  string
	off   int
	block bool
}

func blank(p []byte, start, end int) {
	for i := start; i < end; i++ {
		if p[i] != '\n' {
			p[i] = ' '
		}
	}
}

// checkMakeTargets reports a `make X` in code that names no Makefile target.
func checkMakeTargets(file, text string, targets map[string]bool) []Problem {
	var out []Problem
	code, _ := codeRegions(text)
	for _, r := range code {
		if r.block {
			// A shell comment is prose ("# … make test runs …").
			r.text = shellCommentRE.ReplaceAllStringFunc(r.text, func(c string) string { return strings.Repeat(" ", len(c)) })
		}
		for _, m := range makeRE.FindAllStringSubmatchIndex(r.text, -1) {
			for _, a := range makeArgRE.FindAllStringSubmatch(r.text[m[2]:m[3]], -1) {
				t := a[1]
				if a[2] != "" || strings.HasPrefix(t, "-") {
					continue // a variable or a flag
				}
				if !targets[t] {
					out = append(out, Problem{File: file, Line: lineOf(text, r.off+m[2]), Msg: fmt.Sprintf("make %s: the Makefile has no target %q (`make help` lists them)", t, t)})
				}
			}
		}
	}
	return out
}

// checkPaths reports relative links, and code spans that are paths in the
// repository, naming nothing that exists.
func checkPaths(root, file, text string, topLevel map[string]bool, tree []string) []Problem {
	var out []Problem
	code, prose := codeRegions(text)
	dir := filepath.Dir(file)
	var links [][]int
	links = append(links, linkRE.FindAllStringSubmatchIndex(prose, -1)...)
	links = append(links, refLinkRE.FindAllStringSubmatchIndex(prose, -1)...)
	for _, m := range links {
		target := prose[m[2]:m[3]]
		if schemeRE.MatchString(target) || strings.HasPrefix(target, "#") {
			continue
		}
		target, _, _ = strings.Cut(target, "#")
		target, _, _ = strings.Cut(target, "?")
		rel := filepath.Clean(filepath.Join(dir, target))
		if rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(target) {
			out = append(out, Problem{File: file, Line: lineOf(text, m[2]), Msg: fmt.Sprintf("link %s leaves the repository", target)})
			continue
		}
		if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
			out = append(out, Problem{File: file, Line: lineOf(text, m[2]), Msg: fmt.Sprintf("link %s: %s does not exist", target, rel)})
		}
	}
	for _, r := range code {
		if r.block {
			continue
		}
		p := strings.TrimPrefix(r.text, "./")
		p = strings.TrimSuffix(p, "/...")
		first, _, ok := strings.Cut(p, "/")
		if !ok || !topLevel[first] || strings.ContainsAny(p, " <>…$") || !pathLike(p) {
			continue
		}
		if !pathExists(root, p) && !isTail(tree, p) {
			out = append(out, Problem{File: file, Line: lineOf(text, r.off), Msg: fmt.Sprintf("%s does not exist", r.text)})
		}
	}
	return out
}

// pathLike reports whether p reads as a path of this tree, whose directories
// and files are lower-case: a component that starts with an upper-case
// letter is a name of something else ("descheduler/Checkpointing", a fault
// in a phase), unless it is a file name with an extension or a Makefile or
// Dockerfile.
func pathLike(p string) bool {
	parts := strings.Split(p, "/")
	for i, c := range parts {
		if c == "" || c[0] < 'A' || c[0] > 'Z' || c == "Makefile" || c == "Dockerfile" {
			continue
		}
		if i == len(parts)-1 && strings.Contains(c, ".") {
			continue
		}
		return false
	}
	return true
}

// pathExists reports whether p (relative to root, with shell globs and
// {a,b} alternatives, a trailing ":Name" as in package:FuzzTarget or
// ".Name" as in package.Function ignored) names at least one existing file
// or directory, every alternative included.
func pathExists(root, p string) bool {
	p, _, _ = strings.Cut(p, ":")
	if m := goSymbolRE.FindStringIndex(p); m != nil {
		p = p[:m[0]]
	}
	for _, alt := range expandBraces(p) {
		matches, err := filepath.Glob(filepath.Join(root, alt))
		if err != nil || len(matches) == 0 {
			return false
		}
	}
	return true
}

// isTail reports whether p, without globs, is the tail of a longer path of
// the tree: docs shorten package paths (`internal/fswalk` for
// agent/replication/internal/fswalk) where the context names the rest.
func isTail(tree []string, p string) bool {
	if strings.ContainsAny(p, "*?[{:") {
		return false
	}
	p = strings.TrimSuffix(p, "/")
	for _, t := range tree {
		if strings.HasSuffix(t, "/"+p) {
			return true
		}
	}
	return false
}

func expandBraces(p string) []string {
	m := braceRE.FindStringSubmatchIndex(p)
	if m == nil {
		return []string{p}
	}
	var out []string
	for _, alt := range strings.Split(p[m[2]:m[3]], ",") {
		out = append(out, expandBraces(p[:m[0]]+alt+p[m[1]:])...)
	}
	return out
}
