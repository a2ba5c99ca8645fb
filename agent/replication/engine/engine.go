package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
)

// Pass names the kind of an rsync pass.
type Pass string

const (
	PassFull   Pass = "full"
	PassDelta  Pass = "delta"
	PassFinal  Pass = "final"
	PassVerify Pass = "verify"
	PassRepair Pass = "repair"
	// PassPreVerify is a checksum verification while the application
	// runs (Session.PreVerify); its differences are expected.
	PassPreVerify Pass = "preverify"
)

// DefaultMaxRepairs bounds the repair/verify cycles of a final pass.
const DefaultMaxRepairs = 2

// Retries of a failed pre-copy pass.
const (
	// DefaultPassAttempts bounds the attempts of one pre-copy pass.
	DefaultPassAttempts = 3
	// DefaultRetryBackoff is the wait before the second attempt; it
	// doubles after every further failure, up to MaxRetryBackoff.
	DefaultRetryBackoff = 2 * time.Second
	MaxRetryBackoff     = time.Minute
)

// Config configures a Session.
type Config struct {
	// SourceDir is the volume content on the source node.
	SourceDir string
	// BaseDir, when set, is read by the full pass (round 1) instead of
	// SourceDir: a crash-consistent snapshot of the volume.
	BaseDir string
	// Dial opens an authenticated connection to the receiver.
	Dial func(ctx context.Context) (net.Conn, error)
	// Peer runs the passes against the receiver; nil for rsync and the
	// replication protocol over Dial. Tests replace it.
	Peer Peer
	// RsyncPath is the rsync binary ("rsync" when empty).
	RsyncPath string
	// BandwidthLimit in bytes per second on the tunnel; 0 is unlimited.
	BandwidthLimit int64
	// BlockSize of the delta algorithm; rsync's default when 0.
	BlockSize int
	// ConvergenceThreshold: pre-copy stops once a pass changed at most this
	// many bytes of file data.
	ConvergenceThreshold int64
	// MaxRounds bounds the pre-copy passes (full included).
	MaxRounds int
	// Clock is injected for tests; the real clock when nil.
	Clock clock.PassiveClock
	// PassAttempts bounds the attempts of one pre-copy pass: a pass failing
	// for a transient reason (connection lost, receiver restarting) is run
	// again after a backoff instead of failing the replication.
	// DefaultPassAttempts when 0; 1 disables retries.
	PassAttempts int
	// RetryBackoff is the wait before the second attempt (doubling, at most
	// MaxRetryBackoff); DefaultRetryBackoff when 0.
	RetryBackoff time.Duration
	// Sleep waits d unless ctx ends first; tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRetry is called when a failed pre-copy pass is going to be retried.
	OnRetry func(Retry)
	// Verified, when set, holds the records of pre-freeze verifications
	// (PreVerify) that let Final checksum only what changed since.
	Verified *VerifyState
	// WholeFinalVerify makes Final verify the whole tree even with records
	// (and so also disables the block delta).
	WholeFinalVerify bool
	// DisableBlockDelta makes Final always run the rsync final pass and its
	// checksum verification, even when only file content changed since the
	// pre-freeze verification (see Final); benchmarks compare both.
	DisableBlockDelta bool
	// DisableTarFirstPass makes the first pass rsync even into an empty
	// target (the tar stream is used by default, see package tarstream).
	DisableTarFirstPass bool
	// OnPass is called after every pass (also failed ones).
	OnPass func(PassResult)
	// OnProgress receives rsync progress during a pass.
	OnProgress func(Pass, int, protocol.Progress)
	// Counter, when set, accumulates the bytes on the wire of the
	// pre-copy and final passes as they are sent, so that a caller can
	// report a pass in progress (PassResult.WireSent only comes at its end).
	Counter *transport.Counter
}

// PassResult reports one pass.
type PassResult struct {
	Pass  Pass
	Round int
	protocol.Result
	// TarStream is set when the pass was a tar stream, not rsync.
	TarStream bool
	// BlockDelta is set when the final pass was a block delta (package
	// blockdelta), not rsync.
	BlockDelta bool
	// Attempt of a pre-copy pass (1 for the first; retries count up).
	Attempt int
	// Differences of a verification pass.
	Differences []string
	Err         error
}

// Retry describes a failed pre-copy pass that is run again.
type Retry struct {
	Pass  Pass
	Round int
	// Attempt is the attempt that failed (1 for the first).
	Attempt int
	// Attempts is the limit.
	Attempts int
	// Wait before the next attempt.
	Wait time.Duration
	Err  error
}

// PreCopyResult is the outcome of PreCopy.
type PreCopyResult struct {
	// Round is the last completed round.
	Round int
	// Converged is set when the last delta was at most the threshold.
	Converged bool
	// LastDelta is the file data changed in the last round.
	LastDelta int64
	// Throughput observed over the passes, bytes per second on the wire.
	Throughput float64
	// EstimatedFinal is the expected duration of the final delta pass.
	EstimatedFinal time.Duration
}

// FinalMethod tells how a final pass sent the changes.
type FinalMethod string

const (
	// FinalBlockDelta: the changed files went as a block delta against
	// the target's block index and were compared block by block.
	FinalBlockDelta FinalMethod = "blockdelta"
	// FinalRsync: an rsync delta pass and a checksum verification.
	FinalRsync FinalMethod = "rsync"
)

// Fallback says why a final pass used rsync rather than the block delta.
// The values are few and fixed (they label a metric).
type Fallback string

const (
	// FallbackDisabled: WholeFinalVerify or DisableBlockDelta.
	FallbackDisabled Fallback = "disabled"
	// FallbackNoRecords: no pre-freeze verification recorded the tree.
	FallbackNoRecords Fallback = "no-records"
	// FallbackNotApplicable: something other than the content, size,
	// mode or time of indexed regular files changed (an entry added,
	// removed or of another type, a changed directory or symlink, a
	// target changed since the pre-freeze verification, a file without
	// an index, hard links, extended attributes, holes).
	FallbackNotApplicable Fallback = "not-applicable"
	// FallbackFailed: the block delta failed to run (connection,
	// receiver error).
	FallbackFailed Fallback = "failed"
	// FallbackMismatch: after the block delta the target did not equal
	// the source (a block read back differently, metadata, the target's
	// manifest).
	FallbackMismatch Fallback = "mismatch"
)

// FinalResult is the outcome of Final.
type FinalResult struct {
	// Method that made the target equal.
	Method FinalMethod
	// Fallback and FallbackDetail say why the rsync method ran (empty
	// for the block delta).
	Fallback       Fallback
	FallbackDetail string
	Delta          protocol.Result
	Verify         rsync.VerifyResult
	Repairs        int
	// Counts tells how the target was found equal.
	Counts VerifyCounts
	// Downtime is the wall time of the final pass including verification.
	Downtime time.Duration
}

// ChecksumMismatchError is returned when the target still differs from the
// source after the allowed repairs.
type ChecksumMismatchError struct {
	Differences []string
}

func (e *ChecksumMismatchError) Error() string {
	d := e.Differences
	more := ""
	if len(d) > 5 {
		d, more = d[:5], fmt.Sprintf(" and %d more", len(e.Differences)-5)
	}
	return fmt.Sprintf("verification failed: target differs from source: %q%s", d, more)
}

// IsChecksumMismatch reports whether err is a ChecksumMismatchError.
func IsChecksumMismatch(err error) bool {
	var e *ChecksumMismatchError
	return errors.As(err, &e)
}

// Session replicates one volume.
type Session struct {
	cfg        Config
	peer       Peer
	clock      clock.PassiveClock
	throughput float64
}

// NewSession validates cfg and returns a Session.
func NewSession(cfg Config) (*Session, error) {
	if cfg.SourceDir == "" {
		return nil, errors.New("source directory is required")
	}
	if cfg.Dial == nil {
		return nil, errors.New("dialer is required")
	}
	if cfg.MaxRounds < 1 {
		return nil, fmt.Errorf("max rounds must be at least 1, got %d", cfg.MaxRounds)
	}
	if cfg.ConvergenceThreshold < 0 {
		return nil, fmt.Errorf("convergence threshold must not be negative, got %d", cfg.ConvergenceThreshold)
	}
	c := cfg.Clock
	if c == nil {
		c = clock.RealClock{}
	}
	p := cfg.Peer
	if p == nil {
		p = rsyncPeer{dial: cfg.Dial}
	}
	return &Session{cfg: cfg, peer: p, clock: c}, nil
}

func (s *Session) opts(pass Pass, round int, allowVanished bool) protocol.SendOptions {
	o := protocol.SendOptions{
		SourceDir:      s.cfg.SourceDir,
		Dial:           s.cfg.Dial,
		RsyncPath:      s.cfg.RsyncPath,
		BandwidthLimit: s.cfg.BandwidthLimit,
		BlockSize:      s.cfg.BlockSize,
		AllowVanished:  allowVanished,
		Counter:        s.cfg.Counter,
	}
	if s.cfg.OnProgress != nil {
		o.OnProgress = func(p protocol.Progress) { s.cfg.OnProgress(pass, round, p) }
	}
	return o
}

func (s *Session) report(r PassResult) {
	if r.Err == nil && r.Duration > 0 && r.WireSent > 0 {
		bps := float64(r.WireSent) / r.Duration.Seconds()
		// Keep the best observation: small passes are dominated by latency.
		if bps > s.throughput {
			s.throughput = bps
		}
	}
	if s.cfg.OnPass != nil {
		s.cfg.OnPass(r)
	}
}

// PreCopy runs passes after round `completed` (0 for a fresh replication)
// until the delta converges or MaxRounds passes have run. The application
// keeps running: files vanishing mid-pass are tolerated.
func (s *Session) PreCopy(ctx context.Context, completed int) (PreCopyResult, error) {
	res := PreCopyResult{Round: completed}
	for round := completed + 1; round <= s.cfg.MaxRounds; round++ {
		pass := PassDelta
		if round == 1 {
			pass = PassFull
		}
		o := s.opts(pass, round, true)
		if round == 1 {
			// The full pass writes everything: -S only if needed.
			o.DetectSparse = true
			if s.cfg.BaseDir != "" {
				o.SourceDir = s.cfg.BaseDir
			}
		}
		r, err := s.withRetries(ctx, pass, round, func() (protocol.Result, bool, error) {
			if round == 1 {
				if err := s.checkSpace(ctx, o.SourceDir); err != nil {
					return protocol.Result{}, false, err
				}
				return s.fullPass(ctx, o)
			}
			r, err := s.peer.Send(ctx, o)
			return r, false, err
		})
		if err != nil {
			return res, fmt.Errorf("pre-copy round %d: %w", round, err)
		}
		res.Round = round
		res.LastDelta = r.Stats.LiteralData
		res.Throughput = s.throughput
		res.EstimatedFinal = s.estimate(r)
		if round > 1 && r.Stats.LiteralData <= s.cfg.ConvergenceThreshold {
			res.Converged = true
			return res, nil
		}
	}
	return res, nil
}

// checkSpace makes sure, before the first pass writes anything, that the
// target has room for what the source tree occupies: a target too small
// fails the replication at once with what is missing (an error wrapping
// *protocol.SpaceError) instead of after copying most of the volume.
func (s *Session) checkSpace(ctx context.Context, dir string) error {
	need, err := protocol.TreeUsage(dir)
	if err != nil {
		return fmt.Errorf("measuring the source volume: %w", err)
	}
	if err := s.peer.CheckSpace(ctx, need); err != nil {
		return fmt.Errorf("checking the target's free space: %w", err)
	}
	return nil
}

// withRetries runs a pre-copy pass, and runs it again after a backoff when
// it failed for a reason that may be transient (not a full or too small
// target, not a cancelled context), at most PassAttempts times. Every attempt is reported.
func (s *Session) withRetries(ctx context.Context, pass Pass, round int, run func() (protocol.Result, bool, error)) (protocol.Result, error) {
	attempts := s.cfg.PassAttempts
	if attempts <= 0 {
		attempts = DefaultPassAttempts
	}
	wait := s.cfg.RetryBackoff
	if wait <= 0 {
		wait = DefaultRetryBackoff
	}
	sleep := s.cfg.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	for attempt := 1; ; attempt++ {
		r, tar, err := run()
		s.report(PassResult{Pass: pass, Round: round, Result: r, TarStream: tar, Attempt: attempt, Err: err})
		if err == nil || attempt >= attempts || ctx.Err() != nil || protocol.IsDiskFull(err) || protocol.IsSpaceError(err) {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return r, err
		}
		if s.cfg.OnRetry != nil {
			s.cfg.OnRetry(Retry{Pass: pass, Round: round, Attempt: attempt, Attempts: attempts, Wait: wait, Err: err})
		}
		if err := sleep(ctx, wait); err != nil {
			return r, err
		}
		wait = min(2*wait, MaxRetryBackoff)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fullPass copies into the target as a tar stream when the target is empty
// and the source holds only what the stream carries (package tarstream), and
// with rsync otherwise (also when a failed tar pass left partial data).
func (s *Session) fullPass(ctx context.Context, o protocol.SendOptions) (protocol.Result, bool, error) {
	if !s.cfg.DisableTarFirstPass {
		r, err := s.peer.SendTar(ctx, o)
		if !errors.Is(err, protocol.ErrTarNotApplicable) {
			return r, true, err
		}
	}
	r, err := s.peer.Send(ctx, o)
	return r, false, err
}

// KeepWarm runs one more delta pass after round `completed` (the pre-copy
// has already converged or hit its limit; the application still runs) and
// returns the refreshed estimate.
func (s *Session) KeepWarm(ctx context.Context, completed int) (PreCopyResult, error) {
	round := completed + 1
	r, err := s.peer.Send(ctx, s.opts(PassDelta, round, true))
	s.report(PassResult{Pass: PassDelta, Round: round, Result: r, Err: err})
	if err != nil {
		return PreCopyResult{Round: completed}, fmt.Errorf("keep-warm round %d: %w", round, err)
	}
	return PreCopyResult{
		Round: round, LastDelta: r.Stats.LiteralData, Throughput: s.throughput, EstimatedFinal: s.estimate(r),
		Converged: r.Stats.LiteralData <= s.cfg.ConvergenceThreshold,
	}, nil
}

// estimate extrapolates the final pass from the last one: the bytes it put
// on the wire at the best throughput seen, plus the time rsync needed to
// compare the trees when nothing changes (the part of a pass that is not
// transfer).
func (s *Session) estimate(last protocol.Result) time.Duration {
	if s.throughput <= 0 {
		return last.Duration
	}
	transfer := time.Duration(float64(last.WireSent) / s.throughput * float64(time.Second))
	if s.cfg.BandwidthLimit > 0 {
		if limited := time.Duration(float64(last.WireSent) / float64(s.cfg.BandwidthLimit) * float64(time.Second)); limited > transfer {
			transfer = limited
		}
	}
	if transfer > last.Duration {
		return transfer
	}
	return last.Duration
}

// Final makes the target equal to the source and proves it (the pod must
// be frozen). round is the round number to report.
//
// When a pre-freeze verification recorded the tree and indexed the target
// (PreVerify), and every entry that changed since (or differed then) is a
// regular file on both ends whose target is unchanged since it was
// indexed, those files go as a block delta (package blockdelta): only the
// blocks that differ from the target's index are sent, and every block is
// compared by hash with the target's read-back or its index, the metadata
// with the target's, the rest of the tree by its identities (see
// finalBlocks). Otherwise, or if the block
// delta fails or finds a difference, Final runs an rsync delta pass, then
// verifies the target, repairing and re-verifying the whole tree up to
// DefaultMaxRepairs times; FinalResult.Fallback says why.
//
// With records of a pre-freeze verification (Config.Verified, see
// PreVerify) only entries whose source or target identity changed since —
// among them every entry the final pass wrote — are compared with whole-file
// checksums; an entry only on the target is a difference. Without records, or when
// WholeFinalVerify is set or the targeted verification fails to run, the
// whole tree is verified.
func (s *Session) Final(ctx context.Context, round int) (FinalResult, error) {
	start := s.clock.Now()
	var out FinalResult
	targeted := s.cfg.Verified.Len() > 0 && !s.cfg.WholeFinalVerify
	switch {
	case !s.blockDeltaEnabled():
		out.Fallback = FallbackDisabled
	case !targeted:
		out.Fallback = FallbackNoRecords
	default:
		bd, err := s.finalBlocks(ctx, round)
		if err == nil {
			bd.Downtime = s.clock.Since(start)
			return bd, nil
		}
		if ctx.Err() != nil {
			return bd, ctx.Err()
		}
		out.Fallback, out.FallbackDetail = fallbackOf(err), err.Error()
		klog.FromContext(ctx).Info("Final pass by block delta not possible; running the rsync final pass and verification",
			"fallback", out.Fallback, "reason", err.Error())
	}
	out.Method = FinalRsync
	r, err := s.peer.Send(ctx, s.opts(PassFinal, round, false))
	s.report(PassResult{Pass: PassFinal, Round: round, Result: r, Err: err})
	out.Delta = r
	if err != nil {
		return out, fmt.Errorf("final pass: %w", err)
	}
	if targeted {
		diffs, counts, err := s.verifyChanged(ctx, round)
		switch {
		case err != nil && ctx.Err() != nil:
			return out, err
		case err != nil:
			// Fall back to the whole tree below.
		case len(diffs) == 0:
			out.Counts = counts
			out.Downtime = s.clock.Since(start)
			return out, nil
		default:
			out.Verify.Differences = diffs
			out.Repairs++
			rr, err := s.peer.Repair(ctx, s.opts(PassRepair, round, false))
			s.report(PassResult{Pass: PassRepair, Round: round, Result: rr, Err: err})
			if err != nil {
				return out, fmt.Errorf("repair pass: %w", err)
			}
		}
	}
	for {
		v, err := s.peer.Verify(ctx, s.opts(PassVerify, round, false))
		s.report(PassResult{Pass: PassVerify, Round: round, Result: v.Result, Differences: v.Differences, Err: err})
		out.Verify = v
		out.Counts = VerifyCounts{Whole: true, Entries: int(v.Stats.Files), Checksummed: int(v.Stats.Files)}
		if err != nil {
			return out, fmt.Errorf("verification pass: %w", err)
		}
		if v.Equal() {
			out.Downtime = s.clock.Since(start)
			return out, nil
		}
		if out.Repairs >= DefaultMaxRepairs {
			return out, &ChecksumMismatchError{Differences: v.Differences}
		}
		out.Repairs++
		rr, err := s.peer.Repair(ctx, s.opts(PassRepair, round, false))
		s.report(PassResult{Pass: PassRepair, Round: round, Result: rr, Err: err})
		if err != nil {
			return out, fmt.Errorf("repair pass: %w", err)
		}
	}
}

// blockDeltaEnabled tells whether pre-freeze verifications index the
// target and Final may send a block delta.
func (s *Session) blockDeltaEnabled() bool {
	return s.cfg.Verified != nil && !s.cfg.WholeFinalVerify && !s.cfg.DisableBlockDelta
}

// VerifyOnly compares source and target without changing anything.
func (s *Session) VerifyOnly(ctx context.Context) (rsync.VerifyResult, error) {
	return s.peer.Verify(ctx, s.opts(PassVerify, 0, false))
}
