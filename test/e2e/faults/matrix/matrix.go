// Package matrix is the record of the fault matrix (test/e2e/faults): the
// faults and phases it crosses, the outcome of each cell as the test
// writes it (one JSON object a line), and the Markdown table of
// docs/reliability.md rendered from those lines (make reliability-table).
package matrix

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Fault is one fault the matrix injects.
type Fault struct {
	Name string
	// Description says what is done to the lab, for the table's legend.
	Description string
}

// Faults are the rows of the matrix, in order.
var Faults = []Fault{
	{"descheduler", "the descheduler is killed (SIGKILL) and started again"},
	{"source-agent", "the agent of the source pod's node is killed and started again"},
	{"target-agent", "the agents of every node of the target member are killed and started again"},
	{"member-apiserver", "the source member's kube-apiserver is killed and started again"},
	{"karmada-apiserver", "the Karmada plane's kube-apiserver is killed and started again"},
	{"karmada-controller-manager", "karmada-controller-manager is killed and started again"},
	{"link-cut-long", "the WAN link between the members is cut until the migration rolls back or ends (the migration's phase timeouts are 30s), then restored"},
	{"link-cut-brief", "the WAN link between the members is cut for 3s, then restored"},
}

// Phases are the columns of the matrix, in the order a migration passes
// them.
var Phases = []string{"PreCopy", "Checkpointing", "Rebinding", "FinalSync", "Transfer", "Restoring", "Verifying", "Cleanup"}

// Outcomes of a cell.
const (
	// Succeeded: the migration succeeded and every invariant held.
	Succeeded = "Succeeded"
	// RolledBack: the migration failed and rolled back cleanly: the
	// source runs on with nothing lost, nothing left in the target.
	RolledBack = "RolledBack"
	// Violation: a check failed (the cell's Problems say which).
	Violation = "Violation"
	// NotInjected: the migration was never observed in the phase.
	NotInjected = "NotInjected"
)

// Cell is the outcome of one cell.
type Cell struct {
	Fault string `json:"fault"`
	// Phase is the phase the migration was observed in when the fault was
	// injected; LandedIn the phase it was in at the injection's instant,
	// from its phase transitions (later when the phase ended meanwhile).
	Phase    string `json:"phase"`
	LandedIn string `json:"landedIn,omitempty"`
	Outcome  string `json:"outcome"`
	// Reason is the failure's reason of a failed migration, FailedIn its
	// phase.
	Reason   string `json:"reason,omitempty"`
	FailedIn string `json:"failedIn,omitempty"`
	// FaultFor is how long the fault lasted (down until ready again, or
	// cut until restored); Recovery the time from the injection to the
	// migration's end; Duration the whole migration.
	FaultFor time.Duration `json:"faultFor"`
	Recovery time.Duration `json:"recovery"`
	Duration time.Duration `json:"duration"`
	// Problems are the failed checks of a Violation.
	Problems []string  `json:"problems,omitempty"`
	At       time.Time `json:"at"`
}

// Key names the cell, "<fault>/<phase>".
func (c Cell) Key() string { return c.Fault + "/" + c.Phase }

// Append adds the cell to the results file at path.
func Append(path string, c Cell) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read reads results lines; a later line of a cell replaces an earlier one.
func Read(r io.Reader) (map[string]Cell, error) {
	out := map[string]Cell{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var c Cell
		if err := json.Unmarshal(line, &c); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if c.Fault == "" || c.Phase == "" || c.Outcome == "" {
			return nil, fmt.Errorf("line %d: a cell needs fault, phase and outcome", n)
		}
		out[c.Key()] = c
	}
	return out, sc.Err()
}

// Table renders the matrix in Markdown: a row per fault, a column per
// phase, each cell its outcome (the failure's reason of a rollback) and
// the time from the injection to the migration's end; "not run" for a cell
// without a result. Below it, the legend of the faults and every cell's
// problems.
func Table(cells map[string]Cell) string {
	var b strings.Builder
	b.WriteString("| fault \\ phase |")
	for _, p := range Phases {
		b.WriteString(" " + p + " |")
	}
	b.WriteString("\n|---|")
	for range Phases {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var problems []string
	for _, f := range Faults {
		b.WriteString("| " + f.Name + " |")
		for _, p := range Phases {
			c, ok := cells[f.Name+"/"+p]
			b.WriteString(" " + cellText(c, ok) + " |")
			if ok && len(c.Problems) > 0 {
				problems = append(problems, fmt.Sprintf("- %s: %s", c.Key(), strings.Join(c.Problems, "; ")))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\nFaults:\n\n")
	for _, f := range Faults {
		fmt.Fprintf(&b, "- **%s**: %s.\n", f.Name, f.Description)
	}
	if len(problems) > 0 {
		b.WriteString("\nProblems found:\n\n")
		b.WriteString(strings.Join(problems, "\n") + "\n")
	}
	return b.String()
}

func cellText(c Cell, ok bool) string {
	if !ok {
		return "not run"
	}
	rec := c.Recovery.Round(time.Second).String()
	landed := ""
	if c.LandedIn != "" && c.LandedIn != c.Phase {
		landed = " (hit " + c.LandedIn + ")"
	}
	switch c.Outcome {
	case Succeeded:
		return "Succeeded, " + rec + landed
	case RolledBack:
		return fmt.Sprintf("rolled back (%s in %s), %s%s", c.Reason, c.FailedIn, rec, landed)
	case NotInjected:
		return "not injected"
	}
	return "**VIOLATION**" + landed
}

// Begin and End delimit the generated table in docs/reliability.md.
const (
	Begin = "<!-- BEGIN GENERATED FAULT MATRIX (make reliability-table) -->"
	End   = "<!-- END GENERATED FAULT MATRIX -->"
)

// UpdateDoc replaces what lies between Begin and End in doc with the table
// and a line naming the command and the time that produced the results.
func UpdateDoc(doc []byte, table, command string, at time.Time) ([]byte, error) {
	s := string(doc)
	i := strings.Index(s, Begin)
	j := strings.Index(s, End)
	if i < 0 || j < i {
		return nil, errors.New("the document has no " + Begin + " … " + End + " section")
	}
	var b strings.Builder
	b.WriteString(s[:i+len(Begin)])
	fmt.Fprintf(&b, "\n\nGenerated from the results of `%s` (last cell %s).\n\n", command, at.UTC().Format(time.RFC3339))
	b.WriteString(table)
	b.WriteString("\n")
	b.WriteString(s[j:])
	return []byte(b.String()), nil
}
