package lab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// failureLines is how many lines of a test's output before its "--- FAIL"
// line the failure summary repeats.
const failureLines = 30

// failureRecorder passes the test binary's standard output through
// unchanged and keeps, for every "--- FAIL" line, the lines printed before
// it. The lab's log dump comes after the tests' own output and is long;
// RunTests prints this summary after it, so that the reason a package
// failed is the last thing a truncated CI log shows.
type failureRecorder struct {
	orig *os.File
	w    *os.File
	done chan struct{}

	mu       sync.Mutex
	failures []string
}

// recordFailures replaces os.Stdout with a pipe copied to the original.
// It returns nil (and changes nothing) when the pipe cannot be made.
func recordFailures() *failureRecorder {
	r, w, err := os.Pipe()
	if err != nil {
		return nil
	}
	f := &failureRecorder{orig: os.Stdout, w: w, done: make(chan struct{})}
	os.Stdout = w
	go f.copy(r)
	return f
}

func (f *failureRecorder) copy(r io.ReadCloser) {
	defer close(f.done)
	defer r.Close()
	var recent []string
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			_, _ = io.WriteString(f.orig, line)
			trimmed := strings.TrimRight(line, "\n")
			if strings.Contains(trimmed, "--- FAIL") {
				f.mu.Lock()
				f.failures = append(f.failures, strings.Join(append(recent, trimmed), "\n"))
				f.mu.Unlock()
				recent = nil
			} else {
				recent = append(recent, trimmed)
				if len(recent) > failureLines {
					recent = recent[len(recent)-failureLines:]
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// stop restores os.Stdout and returns what was recorded.
func (f *failureRecorder) stop() []string {
	if f == nil {
		return nil
	}
	os.Stdout = f.orig
	_ = f.w.Close()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures
}

// printFailureSummary writes the recorded failures and the package-level
// reasons after the log dump.
func printFailureSummary(w io.Writer, failures, reasons []string) {
	if len(failures) == 0 && len(reasons) == 0 {
		return
	}
	fmt.Fprintln(w, "===== summary: why this package failed (repeated after the lab logs) =====")
	for _, r := range reasons {
		fmt.Fprintf(w, "FAIL: %s\n", r)
	}
	for _, f := range failures {
		fmt.Fprintln(w, f)
	}
}
