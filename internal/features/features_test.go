package features

import (
	"testing"

	"github.com/spf13/pflag"
)

func TestPostCopyMigrationIsAlphaAndOff(t *testing.T) {
	g := New()
	if g.Enabled(PostCopyMigration) {
		t.Fatal("PostCopyMigration is enabled by default")
	}
	spec, ok := g.GetAll()[PostCopyMigration]
	if !ok || spec.PreRelease != "ALPHA" {
		t.Fatalf("PostCopyMigration spec = %+v (known %v), want alpha", spec, ok)
	}
}

func TestFeatureGatesFlag(t *testing.T) {
	g := New()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	g.AddFlag(fs)
	if err := fs.Parse([]string{FlagHint(PostCopyMigration)}); err != nil {
		t.Fatal(err)
	}
	if !g.Enabled(PostCopyMigration) {
		t.Fatalf("%s did not enable the gate", FlagHint(PostCopyMigration))
	}
	// Each call of New is its own gate set.
	if New().Enabled(PostCopyMigration) {
		t.Fatal("enabling the feature in one gate set enabled it in another")
	}
	if err := New().Set("NoSuchFeature=true"); err == nil {
		t.Fatal("an unknown feature was accepted")
	}
}
