package report

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// criuRecheck is how long a criu check result is reused: the check takes
// seconds, the report is renewed every few.
const criuRecheck = 10 * time.Minute

// ProbeCRIU returns a function reporting the node's CRIU from criu
// --version and criu check with the node's criu binary: the version
// ("4.2.1", empty when it cannot be read) and CRIUCheckOK or what is wrong.
// The check takes seconds, so it runs in the background, never inside a
// renewal: until the first one finished the function returns empty
// strings, then the latest result, and a result older than ten minutes
// starts a new check.
func ProbeCRIU(criu string) func(context.Context) (string, string) {
	var (
		mu             sync.Mutex
		at             time.Time
		running        bool
		version, check string
	)
	return func(ctx context.Context) (string, string) {
		mu.Lock()
		defer mu.Unlock()
		if !running && (at.IsZero() || time.Since(at) >= criuRecheck) {
			running = true
			go func() {
				v, c := probeCRIU(context.WithoutCancel(ctx), criu)
				mu.Lock()
				defer mu.Unlock()
				version, check, at, running = v, c, time.Now(), false
			}()
		}
		return version, check
	}
}

func probeCRIU(ctx context.Context, criu string) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, criu, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Sprintf("%s --version: %v: %s", criu, err, lastLine(out))
	}
	version := ParseCRIUVersion(string(out))
	if version == "" {
		return "", fmt.Sprintf("%s --version: no version in %q", criu, lastLine(out))
	}
	out, err = exec.CommandContext(ctx, criu, "check").CombinedOutput()
	if err != nil {
		return version, fmt.Sprintf("criu check failed (%v): %s", err, lastLine(out))
	}
	return version, CRIUCheckOK
}

// ParseCRIUVersion reads the version from criu --version's output
// ("Version: 4.2.1"); empty when there is none.
func ParseCRIUVersion(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	s := strings.TrimSpace(lines[len(lines)-1])
	if len(s) > 256 {
		s = s[:256]
	}
	return s
}
