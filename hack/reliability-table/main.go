// Command reliability-table renders the fault matrix's results (the JSON
// lines test/e2e/faults appends to $LIVEMIGRATE_FAULTS_RESULTS) into the
// generated section of docs/reliability.md.
//
//	go run ./hack/reliability-table --results bin/faults/results.jsonl --doc docs/reliability.md --command "make test-faults"
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/livemigrate/livemigrate/test/e2e/faults/matrix"
)

func main() {
	results := flag.String("results", "bin/faults/results.jsonl", "the results file the fault matrix wrote")
	doc := flag.String("doc", "docs/reliability.md", "the document whose generated section is replaced")
	command := flag.String("command", "make test-faults", "the command that produced the results, named in the document")
	flag.Parse()
	if err := run(*results, *doc, *command); err != nil {
		fmt.Fprintln(os.Stderr, "reliability-table:", err)
		os.Exit(1)
	}
}

func run(results, doc, command string) error {
	f, err := os.Open(results)
	if err != nil {
		return fmt.Errorf("%w (run the matrix first: make test-faults)", err)
	}
	cells, err := matrix.Read(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", results, err)
	}
	if len(cells) == 0 {
		return fmt.Errorf("%s holds no cell (run the matrix first: make test-faults)", results)
	}
	var last time.Time
	for _, c := range cells {
		if c.At.After(last) {
			last = c.At
		}
	}
	old, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	updated, err := matrix.UpdateDoc(old, matrix.Table(cells), command, last)
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	if err := os.WriteFile(doc, updated, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: %d cells from %s\n", doc, len(cells), results)
	return nil
}
