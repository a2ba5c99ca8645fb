package matrix

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAppendReadAndTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []Cell{
		{Fault: "descheduler", Phase: "Transfer", Outcome: Violation, Problems: []string{"old run"}, At: at},
		{Fault: "descheduler", Phase: "Transfer", Outcome: Succeeded, Recovery: 12400 * time.Millisecond, At: at},
		{Fault: "link-cut-long", Phase: "PreCopy", LandedIn: "PreCopy", Outcome: RolledBack, Reason: "Timeout", FailedIn: "PreCopy", Recovery: 41 * time.Second, At: at},
		{Fault: "target-agent", Phase: "Verifying", LandedIn: "Cleanup", Outcome: Violation, Problems: []string{"invariant 1: two copies"}, At: at},
	} {
		if err := Append(path, c); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cells, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 3 || cells["descheduler/Transfer"].Outcome != Succeeded {
		t.Fatalf("cells = %+v, want 3 with the later descheduler/Transfer line winning", cells)
	}
	table := Table(cells)
	for _, want := range []string{
		"| fault \\ phase | PreCopy | Checkpointing |",
		"| descheduler | not run | not run | not run | not run | Succeeded, 12s | not run |",
		"rolled back (Timeout in PreCopy), 41s |",
		"**VIOLATION** (hit Cleanup)",
		"- target-agent/Verifying: invariant 1: two copies",
		"- **link-cut-brief**:",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	doc := "# Reliability\n\nintro\n\n" + Begin + "\nstale\n" + End + "\n\nafter\n"
	out, err := UpdateDoc([]byte(doc), table, "make test-faults", at)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, "stale") || !strings.HasPrefix(s, "# Reliability\n\nintro\n\n"+Begin) || !strings.HasSuffix(s, End+"\n\nafter\n") ||
		!strings.Contains(s, "`make test-faults` (last cell 2026-01-02T03:04:05Z)") || !strings.Contains(s, table) {
		t.Errorf("updated document:\n%s", s)
	}
	if _, err := UpdateDoc([]byte("no markers"), table, "x", at); err == nil {
		t.Error("UpdateDoc of a document without markers succeeded")
	}
}

func TestReadRejectsIncompleteLines(t *testing.T) {
	if _, err := Read(strings.NewReader(`{"fault":"descheduler","outcome":"Succeeded"}` + "\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Read = %v, want an error naming line 1", err)
	}
	if _, err := Read(strings.NewReader("not json\n")); err == nil {
		t.Error("Read of a line that is not JSON succeeded")
	}
}
