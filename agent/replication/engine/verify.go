package engine

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livemigrate/livemigrate/agent/replication/manifest"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
)

// StableAge is how much older than a manifest an entry's ctime must be for a
// verification of it to be recorded. A change after the manifest then gets
// a later ctime even on a filesystem that stores timestamps to the second
// (a change within the same timestamp tick could otherwise keep the ctime).
const StableAge = time.Second

// VerifyState remembers, per path, the source and target identities
// (package manifest) of entries that a whole-file checksum verification
// found equal while they were stable. It outlives sessions: the agent keeps
// one per replication, in memory (after a restart the final pass verifies
// the whole tree, as without records). Safe for concurrent use.
type VerifyState struct {
	mu      sync.Mutex
	records map[string]verified
}

type verified struct{ src, tgt manifest.Identity }

// NewVerifyState returns an empty state.
func NewVerifyState() *VerifyState { return &VerifyState{records: map[string]verified{}} }

// Len is the number of recorded entries.
func (v *VerifyState) Len() int {
	if v == nil {
		return 0
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.records)
}

// Verified returns the session's verification records (nil if none).
func (s *Session) Verified() *VerifyState { return s.cfg.Verified }

// VerifyCounts tells how the entries of a verification were found equal.
type VerifyCounts struct {
	// Entries on the source.
	Entries int
	// Unchanged entries: source and target identities equal to those a
	// recorded verification saw; their content was not read.
	Unchanged int
	// Checksummed entries: compared by a verification pass (whole-file
	// checksums of regular files, metadata of all).
	Checksummed int
	// Whole is set when the whole tree was verified (no records).
	Whole bool
}

func (c VerifyCounts) String() string {
	if c.Whole {
		return fmt.Sprintf("whole tree verified (%d entries)", c.Entries)
	}
	return fmt.Sprintf("%d entries: %d checksummed, %d unchanged since the pre-freeze verification (not read)",
		c.Entries, c.Checksummed, c.Unchanged)
}

// PreVerify verifies the target against the source while the application
// runs (after PreCopy or KeepWarm) and records, in Config.Verified, the
// entries found equal and stable, so that Final only has to checksum what
// changed since. Entries already recorded and unchanged are not read again.
// round is the round number to report.
//
// Stable means: source and target identities were the same before and after
// the comparison, and both ctimes are at least StableAge older than the
// manifest they come from (the source is synced first with syncfs(2), so a
// later write through a shared mapping faults and updates the times). When
// entries are too fresh, PreVerify waits StableAge once and looks again.
// Differences are not an error here (the application is writing); they are
// simply not recorded.
func (s *Session) PreVerify(ctx context.Context, round int) (VerifyCounts, error) {
	if s.cfg.Verified == nil {
		return VerifyCounts{}, fmt.Errorf("no verification state configured")
	}
	src, tgt, syncStart, err := s.manifests(ctx, true)
	if err != nil {
		return VerifyCounts{}, err
	}
	if fresh(src, syncStart) || fresh(tgt, tgt.Taken) {
		if err := sleepCtx(ctx, StableAge); err != nil {
			return VerifyCounts{}, err
		}
		if src, tgt, syncStart, err = s.manifests(ctx, true); err != nil {
			return VerifyCounts{}, err
		}
	}
	check, counts := s.plan(src, tgt)
	diffs, err := s.checkPaths(ctx, PassPreVerify, round, check, &counts)
	if err != nil {
		return counts, err
	}
	src2, tgt2, _, err := s.manifests(ctx, false)
	if err != nil {
		return counts, err
	}
	differs := map[string]bool{}
	for _, d := range diffs {
		differs[itemPath(d)] = true
	}
	records := map[string]verified{}
	for p, si := range src.Entries {
		ti, inTgt := tgt.Entries[p]
		if !inTgt || differs[p] {
			continue
		}
		if src2.Entries[p] != si || tgt2.Entries[p] != ti || si.CtimeNs >= syncStart.Add(-StableAge).UnixNano() || ti.CtimeNs >= tgt.Taken.Add(-StableAge).UnixNano() {
			continue
		}
		records[p] = verified{src: si, tgt: ti}
	}
	s.cfg.Verified.mu.Lock()
	s.cfg.Verified.records = records
	s.cfg.Verified.mu.Unlock()
	return counts, nil
}

// verifyChanged is the verification under freeze: entries whose source and
// target identities are those of their recorded verification are not read;
// everything else (what changed on the source, what the final pass wrote,
// what changed on the target) is compared with whole-file checksums, and
// entries only on the target are differences.
func (s *Session) verifyChanged(ctx context.Context, round int) ([]string, VerifyCounts, error) {
	src, tgt, _, err := s.manifests(ctx, false)
	if err != nil {
		return nil, VerifyCounts{}, err
	}
	check, counts := s.plan(src, tgt)
	diffs, err := s.checkPaths(ctx, PassVerify, round, check, &counts)
	if err != nil {
		return nil, counts, err
	}
	var extra []string
	for p := range tgt.Entries {
		if _, ok := src.Entries[p]; !ok {
			extra = append(extra, "*extra "+p)
		}
	}
	sort.Strings(extra)
	return append(diffs, extra...), counts, nil
}

// plan lists the source's entries that need a checksum comparison: all but
// those whose source and target identities equal a record's.
func (s *Session) plan(src, tgt manifest.Manifest) ([]string, VerifyCounts) {
	counts := VerifyCounts{Entries: len(src.Entries)}
	var check []string
	s.cfg.Verified.mu.Lock()
	defer s.cfg.Verified.mu.Unlock()
	for p, si := range src.Entries {
		ti, inTgt := tgt.Entries[p]
		if rec, ok := s.cfg.Verified.records[p]; ok && inTgt && rec.src == si && rec.tgt == ti {
			counts.Unchanged++
			continue
		}
		check = append(check, p)
	}
	sort.Strings(check)
	return check, counts
}

// checkPaths runs a checksum verification of paths (none when empty) and
// reports it as a pass of the given kind.
func (s *Session) checkPaths(ctx context.Context, pass Pass, round int, paths []string, counts *VerifyCounts) ([]string, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	v, err := rsync.VerifyPaths(ctx, s.opts(pass, round, false), paths)
	s.report(PassResult{Pass: pass, Round: round, Result: v.Result, Differences: v.Differences, Err: err})
	if err != nil {
		return nil, fmt.Errorf("verification pass: %w", err)
	}
	counts.Checksummed = len(paths)
	return v.Differences, nil
}

// manifests takes the source's manifest (after syncfs when sync is set) and
// the target's; syncStart is when the sync began.
func (s *Session) manifests(ctx context.Context, sync bool) (src, tgt manifest.Manifest, syncStart time.Time, err error) {
	syncStart = time.Now()
	if sync {
		if d, err := os.Open(s.cfg.SourceDir); err == nil {
			_ = unix.Syncfs(int(d.Fd()))
			_ = d.Close()
		}
	}
	if src, err = manifest.Walk(s.cfg.SourceDir); err != nil {
		return src, tgt, syncStart, fmt.Errorf("source manifest: %w", err)
	}
	if tgt, err = rsync.FetchManifest(ctx, s.cfg.Dial); err != nil {
		return src, tgt, syncStart, fmt.Errorf("target manifest: %w", err)
	}
	return src, tgt, syncStart, nil
}

func fresh(m manifest.Manifest, at time.Time) bool {
	limit := at.Add(-StableAge).UnixNano()
	for _, i := range m.Entries {
		if i.CtimeNs >= limit {
			return true
		}
	}
	return false
}

// itemPath is the path of an itemized change ("%i %n%L"): after the
// eleven-character change summary and a space, without a directory's
// trailing slash or a symlink's " -> target". The root is ".".
func itemPath(item string) string {
	if len(item) < 13 {
		return item
	}
	p := item[12:]
	if i := strings.Index(p, " -> "); i >= 0 {
		p = p[:i]
	}
	p = strings.TrimSuffix(p, "/")
	if p == "" || p == "." {
		return "."
	}
	return p
}
