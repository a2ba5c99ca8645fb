package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/livemigrate/livemigrate/agent/replication/blockdelta"
	"github.com/livemigrate/livemigrate/agent/replication/manifest"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
)

// fallbackError is why the block delta was not used or did not succeed.
type fallbackError struct {
	reason Fallback
	err    error
}

func (e *fallbackError) Error() string { return e.err.Error() }
func (e *fallbackError) Unwrap() error { return e.err }

func fallbackOf(err error) Fallback {
	var f *fallbackError
	if errors.As(err, &f) {
		return f.reason
	}
	return FallbackFailed
}

func notApplicable(format string, a ...any) error {
	return &fallbackError{reason: FallbackNotApplicable, err: fmt.Errorf(format, a...)}
}

func mismatch(format string, a ...any) error {
	return &fallbackError{reason: FallbackMismatch, err: fmt.Errorf(format, a...)}
}

// finalBlocks is the final pass as a block delta. It takes both manifests
// and applies only when the trees hold the same paths and every entry whose
// identities differ from its record (or that has none) is a regular file on
// both ends whose target has a valid block index (the target unchanged
// since it was indexed). It sends those files (blockdelta.Send checks every
// block and the metadata: a file sent needs no record) and then checks the
// target's manifest taken after the last file: the files sent have the
// identity the receiver reported, every other entry its recorded one,
// nothing more. On success the records and the index describe the new
// target, so that a repeated Final sends nothing. Any error means: run the
// rsync final pass.
func (s *Session) finalBlocks(ctx context.Context, round int) (FinalResult, error) {
	out := FinalResult{Method: FinalBlockDelta}
	src, tgt, _, err := s.manifests(ctx, false)
	if err != nil {
		return out, &fallbackError{reason: FallbackFailed, err: err}
	}
	v := s.cfg.Verified
	v.mu.Lock()
	files, counts, err := planBlocks(src, tgt, v.records, v.index)
	v.mu.Unlock()
	if err != nil {
		return out, err
	}
	var r protocol.Result
	var br blockdelta.Result
	if len(files) > 0 {
		r, br, err = s.peer.SendBlockDelta(ctx, s.opts(PassFinal, round, false), files)
	} else {
		// Nothing changed: the manifests just taken are the proof.
		br.Manifest = tgt
	}
	// Count the tree as an rsync pass would.
	r.Stats.Files, r.Stats.TotalFileSize = int64(len(src.Entries)), 0
	for _, si := range src.Entries {
		if si.Regular() {
			r.Stats.TotalFileSize += si.Size
		}
	}
	if err == nil {
		err = checkAfter(src, br, v, files)
	}
	s.report(PassResult{Pass: PassFinal, Round: round, Result: r, BlockDelta: true, Err: err})
	out.Delta = r
	if err != nil {
		var m *blockdelta.MismatchError
		var na *fallbackError
		switch {
		case errors.As(err, &na):
		case errors.As(err, &m):
			err = &fallbackError{reason: FallbackMismatch, err: err}
		case errors.Is(err, blockdelta.ErrNotApplicable):
			err = &fallbackError{reason: FallbackNotApplicable, err: err}
		default:
			err = &fallbackError{reason: FallbackFailed, err: err}
		}
		return out, err
	}
	v.mu.Lock()
	for _, f := range br.Files {
		v.records[f.Path] = verified{src: f.Source, tgt: f.Target}
		v.index[f.Path] = &blockdelta.FileIndex{Path: f.Path, Before: f.Target, After: f.Target, Hashes: f.Hashes}
	}
	v.mu.Unlock()
	counts.BlockCompared = len(br.Files)
	out.Counts = counts
	return out, nil
}

// planBlocks lists the files a block delta must send, or tells why it
// cannot.
func planBlocks(src, tgt manifest.Manifest, records map[string]verified, index map[string]*blockdelta.FileIndex) ([]blockdelta.File, VerifyCounts, error) {
	counts := VerifyCounts{Entries: len(src.Entries)}
	paths := make([]string, 0, len(src.Entries))
	for p := range src.Entries {
		if _, ok := tgt.Entries[p]; !ok {
			return nil, counts, notApplicable("%s is missing on the target", p)
		}
		paths = append(paths, p)
	}
	for p := range tgt.Entries {
		if _, ok := src.Entries[p]; !ok {
			return nil, counts, notApplicable("%s is only on the target", p)
		}
	}
	sort.Strings(paths)
	var files []blockdelta.File
	for _, p := range paths {
		si, ti := src.Entries[p], tgt.Entries[p]
		rec, recorded := records[p]
		if recorded && rec.src == si && rec.tgt == ti {
			counts.Unchanged++
			continue
		}
		switch {
		case !si.Regular() || !ti.Regular():
			return nil, counts, notApplicable("%s changed since the pre-freeze verification (or was not found equal then) and is not a regular file on both ends", p)
		case recorded && ti != rec.tgt:
			return nil, counts, notApplicable("%s changed on the target since the pre-freeze verification", p)
		case !index[p].Valid(ti):
			return nil, counts, notApplicable("%s has no block index of its target", p)
		}
		files = append(files, blockdelta.File{Path: p, Source: si, Index: index[p]})
	}
	return files, counts, nil
}

// checkAfter checks the target's manifest taken after the block delta:
// the files sent have the identity the receiver reported for them, every
// other entry still has its recorded identity, and there is nothing else.
func checkAfter(src manifest.Manifest, br blockdelta.Result, v *VerifyState, files []blockdelta.File) error {
	if len(br.Files) != len(files) {
		return mismatch("the block delta answered for %d of %d files", len(br.Files), len(files))
	}
	sent := map[string]manifest.Identity{}
	for _, f := range br.Files {
		sent[f.Path] = f.Target
	}
	tgt := br.Manifest
	if len(tgt.Entries) != len(src.Entries) {
		return mismatch("the target has %d entries after the block delta, the source %d", len(tgt.Entries), len(src.Entries))
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for p := range src.Entries {
		ti, ok := tgt.Entries[p]
		if !ok {
			return mismatch("%s is missing on the target after the block delta", p)
		}
		want, wasSent := sent[p]
		if !wasSent {
			want = v.records[p].tgt
		}
		if ti != want {
			return mismatch("%s changed on the target during the block delta", p)
		}
	}
	return nil
}
