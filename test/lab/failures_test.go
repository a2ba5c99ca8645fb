package lab

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The recorder passes everything through and keeps the lines before each
// "--- FAIL", which the summary repeats after the log dump.
func TestFailureRecorderRepeatsFailures(t *testing.T) {
	orig := os.Stdout
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = out
	defer func() { os.Stdout = orig }()

	rec := recordFailures()
	if rec == nil {
		t.Fatal("recordFailures returned nil")
	}
	fmt.Fprintln(os.Stdout, "=== RUN   TestA")
	fmt.Fprintln(os.Stdout, "--- PASS: TestA (1.00s)")
	fmt.Fprintln(os.Stdout, "=== RUN   TestB")
	fmt.Fprintln(os.Stdout, "    b_test.go:10: placed in member2, want member1")
	fmt.Fprintln(os.Stdout, "--- FAIL: TestB (2.00s)")
	failures := rec.stop()
	if os.Stdout != out {
		t.Fatal("stop did not restore os.Stdout")
	}

	passed, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(passed), "--- PASS: TestA") || !strings.Contains(string(passed), "--- FAIL: TestB") {
		t.Errorf("output not passed through:\n%s", passed)
	}
	if len(failures) != 1 || !strings.Contains(failures[0], "placed in member2, want member1") || !strings.HasSuffix(failures[0], "--- FAIL: TestB (2.00s)") {
		t.Fatalf("recorded %q", failures)
	}

	var summary bytes.Buffer
	printFailureSummary(&summary, failures, []string{"invariant violated: two live copies"})
	for _, want := range []string{"why this package failed", "FAIL: invariant violated: two live copies", "placed in member2, want member1"} {
		if !strings.Contains(summary.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, summary.String())
		}
	}
	summary.Reset()
	printFailureSummary(&summary, nil, nil)
	if summary.Len() != 0 {
		t.Errorf("summary of a passing package: %q", summary.String())
	}
}
