package scenario

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDocExamples(t *testing.T) {
	dir := t.TempDir()
	md := "# T\n\n```yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n```\n\n" +
		"```sh\nkubectl get cm\n```\n\n  ```yml\n  apiVersion: livemigrate.io/v1alpha1\n  kind: LiveMigration\n  metadata: {name: c}\n  spec:\n    timeouts: {preCopy: 30m}\n  ```\n"
	if err := os.WriteFile(filepath.Join(dir, "x.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := DocExamples(dir, "x.md")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"x.md:3 ConfigMap a", "x.md:3 ConfigMap b", "x.md:17 LiveMigration c"}
	if len(got) != len(want) {
		t.Fatalf("examples = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("example %d = %s, want %s", i, got[i], want[i])
		}
	}
	if d := got[2].Object.Object["spec"].(map[string]interface{})["timeouts"].(map[string]interface{})["preCopy"]; d != "30m" {
		t.Errorf("timeouts.preCopy = %v, want the example's spelling 30m", d)
	}
}
