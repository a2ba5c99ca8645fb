package report

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fakeCRIU(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// The probe reports criu's version and what criu check said.
func TestProbeCRIU(t *testing.T) {
	for _, tc := range []struct {
		name, script, version, check string
	}{
		{"works", `case "$1" in --version) echo "Version: 4.2.1";; check) echo "Looks good.";; esac`, "4.2.1", CRIUCheckOK},
		{"check fails", `case "$1" in --version) printf "Version: 3.17.1\nGitID: x\n";; check) echo "Error (criu/kerndat.c:1): kerndat_vdso_fill_symtable failed" >&2; exit 1;; esac`, "3.17.1", "kerndat_vdso_fill_symtable failed"},
		{"no version", `echo "criu: bad option"; exit 1`, "", "--version: exit status 1: criu: bad option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, c := probeUntilDone(t, ProbeCRIU(fakeCRIU(t, tc.script)))
			if v != tc.version {
				t.Errorf("version = %q, want %q", v, tc.version)
			}
			if tc.check == CRIUCheckOK && c != CRIUCheckOK || !strings.Contains(c, tc.check) {
				t.Errorf("check = %q, want %q", c, tc.check)
			}
		})
	}
	if _, c := probeUntilDone(t, ProbeCRIU(filepath.Join(t.TempDir(), "missing"))); !strings.Contains(c, "no such file") {
		t.Errorf("missing criu: check = %q", c)
	}
}

// probeUntilDone calls the probe until its background check reported.
func probeUntilDone(t *testing.T, probe func(context.Context) (string, string)) (string, string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if v, c := probe(context.Background()); c != "" {
			return v, c
		}
		if time.Now().After(deadline) {
			t.Fatal("the CRIU probe never reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The check runs in the background: the first call returns at once with
// nothing, while criu check still runs.
func TestProbeCRIUDoesNotBlock(t *testing.T) {
	probe := ProbeCRIU(fakeCRIU(t, `case "$1" in --version) echo "Version: 4.2.1";; check) sleep 2; echo "Looks good.";; esac`))
	start := time.Now()
	if v, c := probe(context.Background()); v != "" || c != "" {
		t.Errorf("first call returned %q, %q before the check finished", v, c)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("first call took %v", d)
	}
	if v, c := probeUntilDone(t, probe); v != "4.2.1" || c != CRIUCheckOK {
		t.Errorf("after the check: %q, %q", v, c)
	}
}
