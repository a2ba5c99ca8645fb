// Command testsummary runs go test (or any command printing go test's
// output), passes its output through unchanged and, when packages failed,
// ends with a short summary: the failed packages, and for every failing
// test the last log line before its "--- FAIL" line. CI logs keep the
// beginning and the end of long outputs; the summary puts the reason a run
// failed at the end.
//
//	go run ./hack/testsummary -- go test -v ./...
//
// The exit status is the command's.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// drainTimeout is how long the output is read after the command exited.
const drainTimeout = 10 * time.Second

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: testsummary -- go test [flags] [packages]\n\nRuns the command, passes its output through and ends with a summary of the failed packages and tests.")
		os.Exit(2)
	}
	os.Exit(run(args, os.Stdout))
}

func run(args []string, out io.Writer) int {
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(out, "testsummary: %v\n", err)
		return 1
	}
	defer pr.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = os.Stdin
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	// The children hold the write end now; reading ends when the last of
	// them closes it.
	_ = pw.Close()
	if err != nil {
		fmt.Fprintf(out, "testsummary: %v\n", err)
		return 1
	}
	var (
		rec recorder
		mu  sync.Mutex
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		scan(pr, out, func(line string) {
			mu.Lock()
			defer mu.Unlock()
			rec.line(line)
		})
	}()
	err = cmd.Wait()
	// A process the command started and left behind may still hold the
	// pipe open: do not wait for it forever.
	select {
	case <-done:
	case <-time.After(drainTimeout):
		fmt.Fprintf(out, "testsummary: output still open %s after the command exited; summarizing what was read\n", drainTimeout)
	}
	mu.Lock()
	rec.write(out)
	mu.Unlock()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		if code := exit.ExitCode(); code > 0 {
			return code
		}
		return 1
	case err != nil:
		fmt.Fprintf(out, "testsummary: %v\n", err)
		return 1
	}
	return 0
}

// scan copies r to out line by line and hands each line to record.
func scan(r io.Reader, out io.Writer, record func(string)) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			_, _ = io.WriteString(out, line)
			record(line)
		}
		if err != nil {
			return
		}
	}
}
