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
	"k8s.io/klog/v2"

	"github.com/livemigrate/livemigrate/agent/replication/blockdelta"
	"github.com/livemigrate/livemigrate/agent/replication/manifest"
)

// StableAge is how much older than a manifest an entry's ctime must be for a
// verification of it to be recorded. A change after the manifest then gets
// a later ctime even on a filesystem that stores timestamps to the second
// (a change within the same timestamp tick could otherwise keep the ctime).
const StableAge = time.Second

// VerifyState remembers, per path, the source and target identities
// (package manifest) of entries that a whole-file checksum verification
// (or a block delta) found equal while they were stable, and the target's
// block index (package blockdelta). It outlives sessions: the agent keeps
// one per replication, in memory (after a restart the final pass verifies
// the whole tree by rsync, as without records). Safe for concurrent use.
type VerifyState struct {
	mu      sync.Mutex
	records map[string]verified
	// index holds the target's block hashes of recorded regular files
	// (package blockdelta), valid for the recorded target identity.
	index map[string]*blockdelta.FileIndex
}

type verified struct{ src, tgt manifest.Identity }

// NewVerifyState returns an empty state.
func NewVerifyState() *VerifyState {
	return &VerifyState{records: map[string]verified{}, index: map[string]*blockdelta.FileIndex{}}
}

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
	// BlockCompared entries: regular files the final pass sent as a block
	// delta, found equal block by block (source hashes against the
	// target's read-back or its index) and by metadata.
	BlockCompared int
	// Indexed regular files have a target block index after a pre-freeze
	// verification.
	Indexed int
	// Whole is set when the whole tree was verified (no records).
	Whole bool
}

func (c VerifyCounts) String() string {
	if c.Whole {
		return fmt.Sprintf("whole tree verified (%d entries)", c.Entries)
	}
	if c.BlockCompared > 0 {
		return fmt.Sprintf("%d entries: %d compared block by block (block delta), %d unchanged since the pre-freeze verification (not read)",
			c.Entries, c.BlockCompared, c.Unchanged)
	}
	s := fmt.Sprintf("%d entries: %d checksummed, %d unchanged since the pre-freeze verification (not read)",
		c.Entries, c.Checksummed, c.Unchanged)
	if c.Indexed > 0 {
		s += fmt.Sprintf("; %d files block-indexed on the target", c.Indexed)
	}
	return s
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
	if s.blockDeltaEnabled() {
		// A failed index only means a final pass by rsync.
		n, err := s.indexTarget(ctx, tgt2)
		if err != nil {
			if ctx.Err() != nil {
				return counts, ctx.Err()
			}
			klog.FromContext(ctx).Error(err, "Indexing the target's blocks failed; the final pass will use rsync")
		}
		counts.Indexed = n
	}
	return counts, nil
}

// MaxIndexBytes bounds the memory of a session's target block index (16
// bytes per 4 KiB block: 64 MiB cover 16 GiB of files). Files beyond it
// are not indexed; if they change, the final pass uses rsync. The receiver
// answers no larger request (blockdelta.MaxIndexBytes).
const MaxIndexBytes = blockdelta.MaxIndexBytes

// indexTarget brings the target block index up to date with tgt, the
// target's manifest taken after the comparison: it indexes every regular
// target file whose ctime is at least StableAge older than that manifest
// (recorded or not: a file the block delta sends is compared block by
// block, it needs no record), keeps the index of files whose identity is
// still the indexed one, asks the receiver for the others, and keeps an
// answer only if the file did not change while it was hashed and still has
// its manifest identity. It returns the number of files indexed.
func (s *Session) indexTarget(ctx context.Context, tgt manifest.Manifest) (int, error) {
	v := s.cfg.Verified
	stable := tgt.Taken.Add(-StableAge).UnixNano()
	v.mu.Lock()
	var want []string
	var budget int64 = MaxIndexBytes
	index := map[string]*blockdelta.FileIndex{}
	for p, ti := range tgt.Entries {
		if fi := v.index[p]; ti.Regular() && fi.Valid(ti) {
			index[p] = fi
			budget -= fi.Size()
		}
	}
	for p, ti := range tgt.Entries {
		if !ti.Regular() || index[p] != nil || ti.CtimeNs >= stable {
			continue
		}
		if need := blockdelta.Blocks(ti.Size)*blockdelta.HashSize + int64(len(p)); need <= budget {
			want = append(want, p)
			budget -= need
		}
	}
	v.index = index
	v.mu.Unlock()
	sort.Strings(want)
	var got []*blockdelta.FileIndex
	if len(want) > 0 {
		err := s.peer.FetchBlockIndex(ctx, want, func(fi *blockdelta.FileIndex) error {
			got = append(got, fi)
			return nil
		})
		if err != nil {
			return len(index), fmt.Errorf("target block index: %w", err)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, fi := range got {
		if fi.Valid(tgt.Entries[fi.Path]) {
			v.index[fi.Path] = fi
		}
	}
	return len(v.index), nil
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
	v, err := s.peer.VerifyPaths(ctx, s.opts(pass, round, false), paths)
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
	if tgt, err = s.peer.FetchManifest(ctx); err != nil {
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
