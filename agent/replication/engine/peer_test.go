package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/blockdelta"
	"github.com/livemigrate/livemigrate/agent/replication/manifest"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
)

// fakePeer answers each pass from a script and records the calls; it needs
// neither root, nor rsync, nor a receiver.
type fakePeer struct {
	calls []string
	// send, tar, repair and verify answer the calls of their kind in turn;
	// a call beyond the script gets the last answer.
	send   []sendAnswer
	tar    []sendAnswer
	repair []sendAnswer
	verify []verifyAnswer
	// space answers CheckSpace (not recorded in calls); need is what it
	// was asked.
	space error
	need  protocol.Usage
}

type sendAnswer struct {
	literal int64
	err     error
}

type verifyAnswer struct {
	diffs []string
	err   error
}

func next[T any](answers []T, n int) T {
	var zero T
	if len(answers) == 0 {
		return zero
	}
	return answers[min(n, len(answers)-1)]
}

func (p *fakePeer) count(kind string) int {
	n := 0
	for _, c := range p.calls {
		if c == kind {
			n++
		}
	}
	return n
}

func (p *fakePeer) result(kind string, answers []sendAnswer) (protocol.Result, error) {
	a := next(answers, p.count(kind))
	p.calls = append(p.calls, kind)
	return protocol.Result{Stats: protocol.Stats{LiteralData: a.literal, Files: 3}, WireSent: a.literal + 100, Duration: time.Second}, a.err
}

func (p *fakePeer) Send(context.Context, protocol.SendOptions) (protocol.Result, error) {
	return p.result("send", p.send)
}

func (p *fakePeer) SendTar(context.Context, protocol.SendOptions) (protocol.Result, error) {
	return p.result("tar", p.tar)
}

func (p *fakePeer) Repair(context.Context, protocol.SendOptions) (protocol.Result, error) {
	return p.result("repair", p.repair)
}

func (p *fakePeer) Verify(context.Context, protocol.SendOptions) (rsync.VerifyResult, error) {
	a := next(p.verify, p.count("verify"))
	p.calls = append(p.calls, "verify")
	return rsync.VerifyResult{Differences: a.diffs, Result: protocol.Result{Stats: protocol.Stats{Files: 3}}}, a.err
}

func (p *fakePeer) VerifyPaths(context.Context, protocol.SendOptions, []string) (rsync.VerifyResult, error) {
	p.calls = append(p.calls, "verifyPaths")
	return rsync.VerifyResult{}, errors.New("fake peer: no path verification")
}

func (p *fakePeer) FetchManifest(context.Context) (manifest.Manifest, error) {
	p.calls = append(p.calls, "manifest")
	return manifest.Manifest{}, errors.New("fake peer: no manifest")
}

func (p *fakePeer) FetchBlockIndex(context.Context, []string, func(*blockdelta.FileIndex) error) error {
	p.calls = append(p.calls, "blockIndex")
	return errors.New("fake peer: no block index")
}

func (p *fakePeer) CheckSpace(_ context.Context, need protocol.Usage) error {
	p.need = need
	return p.space
}

func (p *fakePeer) SendBlockDelta(context.Context, protocol.SendOptions, []blockdelta.File) (protocol.Result, blockdelta.Result, error) {
	p.calls = append(p.calls, "blockDelta")
	return protocol.Result{}, blockdelta.Result{}, errors.New("fake peer: no block delta")
}

// fakeSession is a session whose passes all go to p.
func fakeSession(t *testing.T, p *fakePeer, mod func(*Config)) (*Session, *[]PassResult, *[]time.Duration) {
	t.Helper()
	var passes []PassResult
	var slept []time.Duration
	cfg := Config{
		SourceDir: t.TempDir(), Peer: p, MaxRounds: 4, ConvergenceThreshold: 10, RetryBackoff: time.Second,
		Dial:   func(context.Context) (net.Conn, error) { return nil, errors.New("fake peer: no dialing") },
		Sleep:  func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil },
		OnPass: func(r PassResult) { passes = append(passes, r) },
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSession(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, &passes, &slept
}

var errReset = errors.New("injected: connection reset")

func TestPreCopyWithPeer(t *testing.T) {
	cases := []struct {
		name      string
		peer      fakePeer
		mod       func(*Config)
		wantCalls string
		wantRound int
		converged bool
		wantErr   string
		wantSlept string
		// wantPasses are the reported passes: how they went ("!" when they
		// failed) @ their attempt.
		wantPasses string
	}{
		{name: "tar first pass, then deltas until converged",
			peer:      fakePeer{tar: []sendAnswer{{literal: 1000}}, send: []sendAnswer{{literal: 500}, {literal: 10}}},
			wantCalls: "tar send send", wantRound: 3, converged: true, wantSlept: "[]", wantPasses: "tar@1 rsync@1 rsync@1"},
		{name: "tar not applicable runs rsync",
			peer:      fakePeer{tar: []sendAnswer{{err: fmt.Errorf("hard links: %w", protocol.ErrTarNotApplicable)}}, send: []sendAnswer{{literal: 1000}, {literal: 5}}},
			wantCalls: "tar send send", wantRound: 2, converged: true, wantSlept: "[]", wantPasses: "rsync@1 rsync@1"},
		{name: "tar disabled",
			peer:      fakePeer{send: []sendAnswer{{literal: 1000}, {literal: 5}}},
			mod:       func(c *Config) { c.DisableTarFirstPass = true },
			wantCalls: "send send", wantRound: 2, converged: true, wantSlept: "[]", wantPasses: "rsync@1 rsync@1"},
		{name: "max rounds without converging",
			peer:      fakePeer{tar: []sendAnswer{{literal: 1000}}, send: []sendAnswer{{literal: 500}}},
			mod:       func(c *Config) { c.MaxRounds = 3 },
			wantCalls: "tar send send", wantRound: 3, converged: false, wantSlept: "[]", wantPasses: "tar@1 rsync@1 rsync@1"},
		{name: "failed first pass retried, by rsync once the target is not empty",
			peer:      fakePeer{tar: []sendAnswer{{err: errReset}, {err: protocol.ErrTarNotApplicable}}, send: []sendAnswer{{literal: 1000}, {literal: 5}}},
			wantCalls: "tar tar send send", wantRound: 2, converged: true, wantSlept: "[1s]", wantPasses: "tar!@1 rsync@2 rsync@1"},
		{name: "delta pass retried with doubling backoff",
			peer:      fakePeer{tar: []sendAnswer{{literal: 1000}}, send: []sendAnswer{{err: errReset}, {err: errReset}, {literal: 5}}},
			mod:       func(c *Config) { c.PassAttempts = 3 },
			wantCalls: "tar send send send", wantRound: 2, converged: true, wantSlept: "[1s 2s]", wantPasses: "tar@1 rsync!@1 rsync!@2 rsync@3"},
		{name: "retries are bounded",
			peer:      fakePeer{tar: []sendAnswer{{literal: 1000}}, send: []sendAnswer{{err: errReset}}},
			mod:       func(c *Config) { c.PassAttempts = 2 },
			wantCalls: "tar send send", wantRound: 1, wantErr: "pre-copy round 2: after 2 attempts: injected: connection reset", wantSlept: "[1s]", wantPasses: "tar@1 rsync!@1 rsync!@2"},
		{name: "full target is not retried",
			peer:      fakePeer{tar: []sendAnswer{{literal: 1000}}, send: []sendAnswer{{err: &protocol.Error{ExitCode: 11, DiskFull: true}}}},
			wantCalls: "tar send", wantRound: 1, wantErr: "No space left on device", wantSlept: "[]", wantPasses: "tar@1 rsync!@1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.peer
			s, passes, slept := fakeSession(t, &p, tc.mod)
			res, err := s.PreCopy(context.Background(), 0)
			if got := strings.Join(p.calls, " "); got != tc.wantCalls {
				t.Errorf("calls %q, want %q", got, tc.wantCalls)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if res.Round != tc.wantRound || res.Converged != tc.converged {
				t.Errorf("round %d, converged %v; want %d, %v", res.Round, res.Converged, tc.wantRound, tc.converged)
			}
			if got := fmt.Sprint(*slept); got != tc.wantSlept {
				t.Errorf("slept %s, want %s", got, tc.wantSlept)
			}
			var got []string
			for _, r := range *passes {
				g := "rsync"
				if r.TarStream {
					g = "tar"
				}
				if r.Err != nil {
					g += "!"
				}
				got = append(got, fmt.Sprintf("%s@%d", g, r.Attempt))
			}
			if strings.Join(got, " ") != tc.wantPasses {
				t.Errorf("passes reported %q, want %q", strings.Join(got, " "), tc.wantPasses)
			}
		})
	}
}

func TestFinalWithPeer(t *testing.T) {
	differ := verifyAnswer{diffs: []string{">fc.t...... data.db"}}
	cases := []struct {
		name        string
		peer        fakePeer
		wantCalls   string
		wantRepairs int
		wantErr     string
		mismatch    bool
	}{
		{name: "equal at once",
			peer:      fakePeer{send: []sendAnswer{{literal: 5}}, verify: []verifyAnswer{{}}},
			wantCalls: "send verify"},
		{name: "repaired once",
			peer:      fakePeer{send: []sendAnswer{{literal: 5}}, verify: []verifyAnswer{differ, {}}},
			wantCalls: "send verify repair verify", wantRepairs: 1},
		{name: "mismatch after the allowed repairs",
			peer:      fakePeer{send: []sendAnswer{{literal: 5}}, verify: []verifyAnswer{differ}},
			wantCalls: "send verify repair verify repair verify", wantRepairs: DefaultMaxRepairs,
			wantErr: "target differs from source", mismatch: true},
		{name: "final pass fails",
			peer:      fakePeer{send: []sendAnswer{{err: errReset}}},
			wantCalls: "send", wantErr: "final pass: injected"},
		{name: "verification fails",
			peer:      fakePeer{send: []sendAnswer{{literal: 5}}, verify: []verifyAnswer{{err: errReset}}},
			wantCalls: "send verify", wantErr: "verification pass: injected"},
		{name: "repair fails",
			peer:      fakePeer{send: []sendAnswer{{literal: 5}}, verify: []verifyAnswer{differ}, repair: []sendAnswer{{err: errReset}}},
			wantCalls: "send verify repair", wantRepairs: 1, wantErr: "repair pass: injected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.peer
			s, passes, slept := fakeSession(t, &p, nil)
			res, err := s.Final(context.Background(), 3)
			if got := strings.Join(p.calls, " "); got != tc.wantCalls {
				t.Errorf("calls %q, want %q", got, tc.wantCalls)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if IsChecksumMismatch(err) != tc.mismatch {
				t.Errorf("IsChecksumMismatch(%v) = %v, want %v", err, !tc.mismatch, tc.mismatch)
			}
			if res.Method != FinalRsync || res.Fallback != FallbackDisabled {
				t.Errorf("method %q, fallback %q; want rsync after %q", res.Method, res.Fallback, FallbackDisabled)
			}
			if res.Repairs != tc.wantRepairs {
				t.Errorf("repairs %d, want %d", res.Repairs, tc.wantRepairs)
			}
			if len(*slept) != 0 {
				t.Errorf("the final pass waited %v; it is never retried", *slept)
			}
			for _, r := range *passes {
				if r.Round != 3 {
					t.Errorf("pass %s reported round %d, want 3", r.Pass, r.Round)
				}
			}
		})
	}
}

// TestFinalWithoutRecordsRunsRsync: with pre-freeze verification enabled
// but nothing recorded yet, Final neither fetches an index nor sends a block
// delta: it runs the rsync final pass and verifies the whole tree.
func TestFinalWithoutRecordsRunsRsync(t *testing.T) {
	p := fakePeer{send: []sendAnswer{{literal: 5}}, verify: []verifyAnswer{{}}}
	s, _, _ := fakeSession(t, &p, func(c *Config) { c.Verified = NewVerifyState() })
	res, err := s.Final(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.calls, " "); res.Fallback != FallbackNoRecords || got != "send verify" || !res.Counts.Whole {
		t.Errorf("fallback %q, calls %q, whole %v; want %q, \"send verify\", whole", res.Fallback, got, res.Counts.Whole, FallbackNoRecords)
	}
}

// TestFinalBlockDeltaThatCannotRunFallsBackToRsync: with records of a
// pre-freeze verification Final tries the block delta first; when the
// target's manifest cannot be read it runs the rsync final pass and, as
// the targeted verification cannot run either, verifies the whole tree.
func TestFinalBlockDeltaThatCannotRunFallsBackToRsync(t *testing.T) {
	p := fakePeer{send: []sendAnswer{{literal: 5}}, verify: []verifyAnswer{{}}}
	v := NewVerifyState()
	v.records = map[string]verified{"data.db": {}}
	s, _, _ := fakeSession(t, &p, func(c *Config) { c.Verified = v })
	res, err := s.Final(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.calls, " "); got != "manifest send manifest verify" {
		t.Errorf("calls %q, want the block delta's manifest, the rsync pass, the targeted verification's manifest, then the whole tree's", got)
	}
	if res.Method != FinalRsync || res.Fallback != FallbackFailed || !strings.Contains(res.FallbackDetail, "target manifest") || !res.Counts.Whole {
		t.Errorf("method %q, fallback %q (%s), whole %v; want rsync after %q naming the target manifest, whole tree verified",
			res.Method, res.Fallback, res.FallbackDetail, res.Counts.Whole, FallbackFailed)
	}
}

// TestPreCopyStopsWhenTheTargetIsTooSmall: the target's answer to the space
// check, made with what the source tree occupies, fails the pre-copy before
// any pass writes, with the receiver's explanation, and is not retried.
func TestPreCopyStopsWhenTheTargetIsTooSmall(t *testing.T) {
	p := &fakePeer{space: &protocol.SpaceError{Message: "the source's data needs 3.0 MiB"}}
	s, passes, _ := fakeSession(t, p, nil)
	if err := os.WriteFile(filepath.Join(s.cfg.SourceDir, "f"), make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.PreCopy(context.Background(), 0)
	if !protocol.IsSpaceError(err) || !strings.Contains(err.Error(), "3.0 MiB") {
		t.Fatalf("PreCopy into a target without room: %v, want the space error", err)
	}
	if len(p.calls) != 0 {
		t.Errorf("passes ran into a target without room: %v", p.calls)
	}
	if len(*passes) != 1 || !protocol.IsSpaceError((*passes)[0].Err) {
		t.Errorf("reported passes %+v, want one attempt failed by the space check (not retried)", *passes)
	}
	if p.need.Bytes < 3<<20 || p.need.Inodes != 2 {
		t.Errorf("space asked for %+v, want at least 3 MiB and 2 inodes (the tree and its file)", p.need)
	}
}
