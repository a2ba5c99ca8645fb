package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

// maxLine is how long one summary line may grow: CI logs fold longer lines.
const maxLine = 900

// maxFailures is how many failing tests the summary names one by one; the
// rest are counted.
const maxFailures = 8

var (
	// "    doctor_test.go:111: message" as testing.T.Log and Error print it.
	testLogLine = regexp.MustCompile(`^\s+[\w./-]+\.go:\d+: \S`)
	failedTest  = regexp.MustCompile(`^\s*--- FAIL: (\S+) \(([^)]*)\)`)
	// "FAIL\tgithub.com/x/y\t12.3s" or "FAIL\tgithub.com/x/y [build failed]".
	failedPkg = regexp.MustCompile(`^FAIL\s+(\S+)(?:\s+(.*))?$`)
	okPkg     = regexp.MustCompile(`^ok\s+(\S+)\s`)
)

// failure is one failing test and the last test log line before its
// "--- FAIL" line: for a failed t.Fatal or the last t.Error, the reason.
type failure struct {
	test, duration, reason string
}

// pkgResult is what one package printed that the summary keeps.
type pkgResult struct {
	name     string
	detail   string
	failures []failure
	// panic is the first "panic:" line, when the test binary panicked or
	// timed out; lab is the lab's own "FAIL: ..." reasons (invariant
	// violations, exited components).
	panic string
	lab   []string
}

// recorder keeps, from go test's output read line by line, what a short
// summary of the failures needs.
type recorder struct {
	ok      int
	failed  []*pkgResult
	current *pkgResult
	// lastLog is the last test log line since the previous "--- FAIL";
	// nested subtests fail before their parents, which then get the same
	// reason.
	lastLog   string
	inSummary bool
}

func (r *recorder) pending() *pkgResult {
	if r.current == nil {
		r.current = &pkgResult{}
	}
	return r.current
}

func (r *recorder) line(s string) {
	s = strings.TrimRight(s, "\r\n")
	switch {
	case testLogLine.MatchString(s):
		r.lastLog = strings.TrimSpace(s)
	case failedTest.MatchString(s):
		m := failedTest.FindStringSubmatch(s)
		p := r.pending()
		for _, f := range p.failures {
			if f.test == m[1] {
				// The lab's summary repeats the failures after its logs.
				return
			}
		}
		p.failures = append(p.failures, failure{test: m[1], duration: m[2], reason: r.lastLog})
	case strings.HasPrefix(s, "panic: ") && r.pending().panic == "":
		r.pending().panic = s
	case strings.HasPrefix(s, "===== summary: why this package failed"):
		r.inSummary = true
	case r.inSummary && strings.HasPrefix(s, "FAIL: "):
		r.pending().lab = append(r.pending().lab, strings.TrimPrefix(s, "FAIL: "))
	case okPkg.MatchString(s):
		r.ok++
		r.reset()
	case failedPkg.MatchString(s):
		m := failedPkg.FindStringSubmatch(s)
		p := r.pending()
		p.name, p.detail = m[1], m[2]
		r.failed = append(r.failed, p)
		r.reset()
	}
}

func (r *recorder) reset() {
	r.current, r.lastLog, r.inSummary = nil, "", false
}

// write prints the summary: nothing when every package passed.
func (r *recorder) write(w io.Writer) {
	if len(r.failed) == 0 {
		return
	}
	names := make([]string, 0, len(r.failed))
	for _, p := range r.failed {
		names = append(names, p.name)
	}
	fmt.Fprintln(w, clip(fmt.Sprintf("===== go test: %d package(s) failed, %d ok; failed: %s", len(r.failed), r.ok, strings.Join(names, ", "))))
	shown, hidden := 0, 0
	for _, p := range r.failed {
		if p.panic != "" {
			fmt.Fprintln(w, clip(fmt.Sprintf("%s: %s", p.name, p.panic)))
		}
		if len(p.lab) > 0 {
			fmt.Fprintln(w, clip(fmt.Sprintf("%s: lab: %s", p.name, strings.Join(p.lab, "; "))))
		}
		if len(p.failures) == 0 && p.panic == "" && len(p.lab) == 0 {
			fmt.Fprintln(w, clip(fmt.Sprintf("%s: %s (no failing test named: see its output above)", p.name, orDefault(p.detail, "FAIL"))))
		}
		for _, f := range p.failures {
			if shown == maxFailures {
				hidden++
				continue
			}
			shown++
			fmt.Fprintln(w, clip(fmt.Sprintf("%s %s (%s): %s", p.name, f.test, f.duration, orDefault(f.reason, "no log line before it"))))
		}
	}
	if hidden > 0 {
		fmt.Fprintf(w, "… and %d more failing tests (grep -- '--- FAIL' the output above)\n", hidden)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func clip(s string) string {
	if len(s) <= maxLine {
		return s
	}
	return s[:maxLine] + "…"
}
