package lab

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// RunTests is the body of a TestMain for a package whose tests share one
// lab. It starts the lab (failing the package loudly, never skipping, when
// binaries are missing or a component does not come up), runs the tests,
// prints the tail of every component's log when a test failed or a
// component exited, and always stops the lab, also on SIGINT/SIGTERM.
// With opts.Invariants (or EnvInvariants) set it runs the invariant
// monitor (package invariant) for the whole run and fails on any violation
// it saw.
//
//	var testLab *lab.Lab
//	func TestMain(m *testing.M) {
//		os.Exit(lab.RunTests(m, lab.Options{Members: 3}, func(l *lab.Lab) { testLab = l }))
//	}
func RunTests(m *testing.M, opts Options, set func(*Lab)) int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	l, err := Start(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: starting the lab: %v\n", err)
		return 1
	}
	// An interrupted test binary still stops the lab before exiting.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "lab: interrupted, stopping the lab")
			l.Stop()
			os.Exit(2)
		case <-done:
		}
	}()
	set(l)
	monCtx, stopMonitor := context.WithCancel(ctx)
	mon := l.watchInvariants(monCtx, opts.Invariants || os.Getenv(EnvInvariants) != "")
	rec := recordFailures()
	code := m.Run()
	failures := rec.stop()
	var reasons []string
	stopMonitor()
	if mon != nil {
		for _, n := range mon.Notes() {
			fmt.Fprintf(os.Stderr, "lab: invariant monitor: %s\n", n)
		}
		v, samples := mon.Violations()
		for _, x := range v {
			fmt.Fprintf(os.Stderr, "FAIL: invariant violated: %s\n", x)
			reasons = append(reasons, fmt.Sprintf("invariant violated: %s", x))
		}
		if len(v) > 0 {
			code = 1
		} else {
			fmt.Fprintf(os.Stderr, "lab: invariant monitor: %d samples, no violation\n", samples)
		}
	}
	if exitErr := l.Err(); exitErr != nil {
		fmt.Fprintf(os.Stderr, "FAIL: lab components exited during the tests:\n%v\n", exitErr)
		reasons = append(reasons, fmt.Sprintf("lab components exited during the tests: %v", exitErr))
		code = 1
	}
	if code != 0 {
		// Keep the whole directory for a closer look.
		l.opts.KeepDir = true
		fmt.Fprintf(os.Stderr, "lab logs (kept in %s):\n", l.Dir)
		l.DumpLogs(os.Stderr, tailLines)
		printFailureSummary(os.Stderr, failures, reasons)
	}
	l.Stop()
	return code
}
