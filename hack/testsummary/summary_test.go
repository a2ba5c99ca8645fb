package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func summarize(t *testing.T, output string) string {
	t.Helper()
	var rec recorder
	for _, l := range strings.SplitAfter(output, "\n") {
		if l != "" {
			rec.line(l)
		}
	}
	var b bytes.Buffer
	rec.write(&b)
	return b.String()
}

func TestSummaryNamesFailedTestsAndTheirLastLogLine(t *testing.T) {
	out := `=== RUN   TestDoctor
    doctor_test.go:66: healthy:
        STATUS  SCOPE
    doctor_test.go:111: kubelet checkpoint API down:
        FAIL    member2  agent member2-node-2
    doctor_test.go:120: context deadline exceeded waiting for the doctor to report x509
--- FAIL: TestDoctor (95.20s)
=== RUN   TestUpgrade
--- PASS: TestUpgrade (3.00s)
FAIL
===== summary: why this package failed (repeated after the lab logs) =====
FAIL: invariant violated: db/web-0 ran in two clusters at once
--- FAIL: TestDoctor (95.20s)
FAIL	github.com/livemigrate/livemigrate/test/install	212.345s
ok  	github.com/livemigrate/livemigrate/agent	0.5s
=== RUN   TestMatrix
=== RUN   TestMatrix/link-cut
    faults_test.go:50: phase Replicating: rollback did not finish
--- FAIL: TestMatrix/link-cut (12.00s)
--- FAIL: TestMatrix (12.01s)
FAIL
FAIL	github.com/livemigrate/livemigrate/test/e2e/faults	30.1s
ok  	github.com/livemigrate/livemigrate/api	(cached)
`
	want := `===== go test: 2 package(s) failed, 2 ok; failed: github.com/livemigrate/livemigrate/test/install, github.com/livemigrate/livemigrate/test/e2e/faults
github.com/livemigrate/livemigrate/test/install: lab: invariant violated: db/web-0 ran in two clusters at once
github.com/livemigrate/livemigrate/test/install TestDoctor (95.20s): doctor_test.go:120: context deadline exceeded waiting for the doctor to report x509
github.com/livemigrate/livemigrate/test/e2e/faults TestMatrix/link-cut (12.00s): faults_test.go:50: phase Replicating: rollback did not finish
github.com/livemigrate/livemigrate/test/e2e/faults TestMatrix (12.01s): faults_test.go:50: phase Replicating: rollback did not finish
`
	if diff := cmp.Diff(want, summarize(t, out)); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

func TestSummaryOfPanicsBuildFailuresAndPasses(t *testing.T) {
	if got := summarize(t, "ok  \texample.com/a\t0.1s\nok  \texample.com/b\t(cached)\n"); got != "" {
		t.Errorf("summary of a passing run: %q, want none", got)
	}
	out := `=== RUN   TestSlow
panic: test timed out after 45m0s
	running tests:
		TestSlow (45m0s)
FAIL	example.com/slow	2700.1s
# example.com/broken
broken/x.go:3:1: syntax error
FAIL	example.com/broken [build failed]
`
	want := `===== go test: 2 package(s) failed, 0 ok; failed: example.com/slow, example.com/broken
example.com/slow: panic: test timed out after 45m0s
example.com/broken: [build failed] (no failing test named: see its output above)
`
	if diff := cmp.Diff(want, summarize(t, out)); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

func TestSummaryCapsItsLength(t *testing.T) {
	var b strings.Builder
	for i := 0; i < maxFailures+3; i++ {
		b.WriteString("    x_test.go:1: " + strings.Repeat("why ", 400) + "\n--- FAIL: TestX" + strconv.Itoa(i) + " (0.00s)\n")
	}
	b.WriteString("FAIL\texample.com/x\t1s\n")
	got := strings.Split(strings.TrimSuffix(summarize(t, b.String()), "\n"), "\n")
	if len(got) != maxFailures+2 {
		t.Fatalf("%d summary lines, want %d (header, %d tests, the count of the rest):\n%s", len(got), maxFailures+2, maxFailures, strings.Join(got, "\n"))
	}
	for _, l := range got {
		if len(l) > maxLine+len("…") {
			t.Errorf("a summary line of %d bytes, longer than %d", len(l), maxLine)
		}
	}
	if last := got[len(got)-1]; !strings.HasPrefix(last, "… and 3 more failing tests") {
		t.Errorf("last line %q does not count the 3 tests left out", last)
	}
}

// TestRunGoTest runs go test on a module with a failing and a passing
// package: the output passes through, the summary ends it and the exit
// status is go test's.
func TestRunGoTest(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":            "module example.com/m\n\ngo 1.21\n",
		"good/good_test.go": "package good\n\nimport \"testing\"\n\nfunc TestGood(t *testing.T) {}\n",
		"bad/bad_test.go":   "package bad\n\nimport \"testing\"\n\nfunc TestBad(t *testing.T) {\n\tt.Log(\"starting\")\n\tt.Fatal(\"the answer is 41\")\n}\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	var out bytes.Buffer
	code := run([]string{goBin, "test", "-count=1", "-v", "./..."}, &out)
	if code != 1 {
		t.Errorf("exit status %d, want go test's 1", code)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("output too short:\n%s", out.String())
	}
	tail := lines[len(lines)-2:]
	want := []string{
		"===== go test: 1 package(s) failed, 1 ok; failed: example.com/m/bad",
		"example.com/m/bad TestBad (0.00s): bad_test.go:7: the answer is 41",
	}
	if diff := cmp.Diff(want, tail); diff != "" {
		t.Errorf("end of the output (-want +got):\n%s\nwhole output:\n%s", diff, out.String())
	}
	if !strings.Contains(out.String(), "--- PASS: TestGood") {
		t.Errorf("the passing package's output did not pass through:\n%s", out.String())
	}
}
