package archive

import (
	"archive/tar"
	"os"
	"path/filepath"
	"testing"
)

// fuzzLimits are small so that the fuzzer reaches the limits.
var fuzzLimits = Limits{MaxMemberBytes: 1 << 20, MaxTotalBytes: 4 << 20, MaxEntries: 256}

// FuzzInspect feeds arbitrary bytes as a checkpoint archive to Inspect:
// it must refuse or read them without panicking, and what it accepts must
// respect the limits. Seeds: a valid archive and the malicious ones of
// TestValidateRejectsMalicious; more under testdata/fuzz/FuzzInspect.
func FuzzInspect(f *testing.F) {
	seed := func(p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(validArchive(f))
	for _, extra := range [][]member{
		{{name: "../escape", typ: tar.TypeReg, body: []byte("x")}},
		{{name: "/abs", typ: tar.TypeReg, body: []byte("x")}},
		{{name: "link", typ: tar.TypeSymlink, link: "../../etc/passwd"}},
		{{name: "hard", typ: tar.TypeLink, link: "/etc/shadow"}},
		{{name: "dev", typ: tar.TypeChar}},
		{{name: "spec.dump", typ: tar.TypeReg, body: []byte("{")}},
	} {
		seed(craft(f, extra, true))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "checkpoint-x_y-z-2026.tar")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		info, err := Inspect(p, fuzzLimits)
		if err != nil {
			return
		}
		if info.Summary == nil {
			t.Fatal("accepted archive without a summary")
		}
		if info.Summary.Entries > fuzzLimits.MaxEntries {
			t.Fatalf("accepted %d members, limit %d", info.Summary.Entries, fuzzLimits.MaxEntries)
		}
	})
}
