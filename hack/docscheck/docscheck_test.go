package docscheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

const repoRoot = "../.."

// repoConfig is the configuration `make test` checks the repository with.
// The order of the LiveMigration phases is the controller's happy path
// (migration.Phases), then RollingBack and Failed; the API declares them in
// another order.
func repoConfig(t *testing.T, root string) Config {
	t.Helper()
	enums, err := LoadEnums(root, "api/v1alpha1", "api/agent/v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, p := range migration.Phases() {
		order = append(order, string(p))
	}
	order = append(order, string(lmv1alpha1.PhaseRollingBack), string(lmv1alpha1.PhaseFailed))
	found := false
	for i, e := range enums {
		if e.Name != "LiveMigrationPhase" {
			continue
		}
		found = true
		if got, want := sorted(e.Values), sorted(order); !slices.Equal(got, want) {
			t.Fatalf("LiveMigrationPhase values %v, the happy path and rollback name %v", got, want)
		}
		e.Values = order
		// Preferred when a list fits several enums.
		enums = append([]Enum{e}, append(enums[:i:i], enums[i+1:]...)...)
		break
	}
	if !found {
		t.Fatal("no LiveMigrationPhase in api/v1alpha1")
	}
	docs, err := DefaultDocs(root)
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob(filepath.Join(root, "plugins", "*", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range more {
		docs = append(docs, strings.TrimPrefix(filepath.ToSlash(m), filepath.ToSlash(root)+"/"))
	}
	docs = append(docs, "agent/README.md", "benchmarks/README.md")
	return Config{Root: root, Docs: docs, Enums: enums, Layout: []string{"README.md", "docs/architecture.md"},
		MetricDirs: []string{"agent", "descheduler", "plugins"}}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestDocsMatchTheTree is the check `make test` runs on the repository.
func TestDocsMatchTheTree(t *testing.T) {
	c := repoConfig(t, repoRoot)
	if len(c.Docs) < 5 {
		t.Fatalf("only %d docs found: %v", len(c.Docs), c.Docs)
	}
	problems, err := Check(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestRepoCheckFindsPlantedMistakes plants one mistake at a time in a copy
// of the repository's docs and expects the check to report it.
func TestRepoCheckFindsPlantedMistakes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string
		old     string
		new     string
		wantMsg string
	}{{
		name:    "phases out of order in a numbered list",
		file:    "docs/architecture.md",
		old:     "4. **Rebinding**",
		new:     "4. **Transfer**",
		wantMsg: "LiveMigrationPhase FinalSync is listed after Transfer",
	}, {
		name:    "a phase the API does not have",
		file:    "docs/livemigration.md",
		old:     "Checkpointing → Rebinding → FinalSync",
		new:     "Checkpointing → Rebind → FinalSync",
		wantMsg: `"Rebind" is not a LiveMigrationPhase`,
	}, {
		name:    "a table row out of order",
		file:    "docs/livemigration.md",
		old:     "| FinalSync | wait",
		new:     "| Restoring | wait",
		wantMsg: "LiveMigrationPhase Transfer is listed after Restoring",
	}, {
		name:    "a binary missing from the README's layout",
		file:    "README.md",
		old:     "`cmd/livemigrate-prober`, ",
		new:     "",
		wantMsg: "does not name cmd/livemigrate-prober",
	}, {
		name:    "a make target that does not exist",
		file:    "README.md",
		old:     "make test-unit ",
		new:     "make test-units",
		wantMsg: `the Makefile has no target "test-units"`,
	}, {
		name:    "a broken relative link",
		file:    "docs/replication.md",
		old:     "](security.md)",
		new:     "](securty.md)",
		wantMsg: "link securty.md: docs/securty.md does not exist",
	}, {
		name:    "a path that does not exist",
		file:    "README.md",
		old:     "`docs/triggers.md`",
		new:     "`docs/trigger.md`",
		wantMsg: "docs/trigger.md does not exist",
	}, {
		name:    "a metric the code does not have",
		file:    "docs/livemigration.md",
		old:     "`livemigrate_migration_downtime_seconds`",
		new:     "`livemigrate_migration_downtime_second`",
		wantMsg: "metric livemigrate_migration_downtime_second: no collector of the code has this name",
	}, {
		name:    "a metric's label renamed",
		file:    "docs/replication.md",
		old:     "`livemigrate_replication_verified_entries_total` | `stage`",
		new:     "`livemigrate_replication_verified_entries_total` | `phase`",
		wantMsg: "metric livemigrate_replication_verified_entries_total: the table names labels [how phase], the code has [how stage]",
	}, {
		name:    "a phase list of another enum out of order",
		file:    "agent/README.md",
		old:     "Checkpointing → Pushing",
		new:     "Pushing → Checkpointing",
		wantMsg: "PodCheckpointPhase Checkpointing is listed after Pushing",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			root := plant(t, tc.file, tc.old, tc.new)
			problems, err := Check(repoConfig(t, root))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			found := false
			for _, p := range problems {
				got = append(got, p.String())
				if p.File != tc.file {
					t.Errorf("problem outside the planted file: %s", p)
				}
				found = found || strings.Contains(p.Msg, tc.wantMsg)
			}
			if !found {
				t.Fatalf("problems %q, want one in %s saying %q", got, tc.file, tc.wantMsg)
			}
		})
	}
}

// plant returns a root that is the repository with one replacement made in
// file: the top-level entry holding file is copied, the others linked.
func plant(t *testing.T, file, old, new string) string {
	t.Helper()
	src, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	top, _, _ := strings.Cut(file, "/")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == top {
			var err error
			if e.IsDir() {
				err = os.CopyFS(filepath.Join(root, top), os.DirFS(filepath.Join(src, top)))
			} else {
				var b []byte
				if b, err = os.ReadFile(filepath.Join(src, top)); err == nil {
					err = os.WriteFile(filepath.Join(root, top), b, 0o644)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.Symlink(filepath.Join(src, e.Name()), filepath.Join(root, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q to replace", file, old)
	}
	if err := os.WriteFile(filepath.Join(root, file), []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestMakeTargetsInCode(t *testing.T) {
	targets := map[string]bool{"test": true, "demo": true, "images": true}
	text := "Run `make test`, `KEEP=1 make demo` or `make images FLAGS=\"--tag v1 --push r/p\"`.\n\n" +
		"```sh\nmake test  # make test runs 3 of its cells\nmake nope\n```\n\nIn prose, make sure is not a target.\n"
	var got []string
	for _, p := range checkMakeTargets("x.md", text, targets) {
		got = append(got, p.String())
	}
	want := []string{`x.md:5: make nope: the Makefile has no target "nope" (` + "`make help`" + ` lists them)`}
	if !slices.Equal(got, want) {
		t.Errorf("problems %q, want %q", got, want)
	}
}

func TestPathLike(t *testing.T) {
	for p, want := range map[string]bool{
		"agent/replication/engine":          true,
		"build/Dockerfile":                  true,
		"test/lab/README.md":                true,
		"agent/checkpointimage.PushArchive": true,
		"descheduler/Checkpointing":         false,
	} {
		if got := pathLike(p); got != want {
			t.Errorf("pathLike(%q) = %v, want %v", p, got, want)
		}
	}
}
