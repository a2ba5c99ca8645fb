// Command replication measures volume replication (agent/replication) on
// this machine against baselines taken over the same path in the same run:
//
//   - raw: the volume's bytes read from the source files, io.Copy'd over a
//     mutual-TLS loopback connection (the same certs/transport code the
//     replication uses) and written to files on the receiving side;
//   - full: the first replication pass as the agent runs it (engine round
//     1: a tar stream into the empty target, package tarstream), and the
//     rsync full pass the agent used before (and still uses into a
//     non-empty target); raw, full and rsync runs alternate (raw, full,
//     rsync, raw, ...) so that all see the same machine load, and the
//     medians are compared, with the CPU time (this process and its rsync
//     children) of each;
//   - delta: a pass after 1% of the volume's 4 KiB blocks, picked at random,
//     were rewritten: bytes the source put on the wire over the volume size;
//   - final: the final pass with 1% dirty, through the lab's WAN relay
//     (test/lab/relay) capped at 100 Mbit/s and 1 Gbit/s with 5 ms one-way
//     delay, as it runs while the pod is frozen: with the whole-tree
//     verification, after a pre-freeze verification by rsync (only what
//     changed is checksummed), and after a pre-freeze verification that
//     indexed the target, by block delta (package blockdelta), for changes
//     spread over every file and in one file; then the rsync final path and
//     the block delta side by side (interleaved, -final-runs each, changes
//     spread over every file), with medians and their ratio.
//
// It prints every figure and ends with "ratio full/raw: R, delta sent: P%,
// final rsync/block delta at M Mbit/s: F" (M the last rate).
// It needs root (the receiver chroots) and the rsync binary.
package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/engine"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/rsync"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
	"github.com/livemigrate/livemigrate/test/lab/relay"
)

const uid = "bench-replication"

func main() {
	size := flag.Int64("size", 1<<30, "volume size in bytes")
	files := flag.Int("files", 16, "number of files the volume is split into")
	dirtyPct := flag.Float64("dirty", 1, "percentage of 4 KiB blocks changed before a delta pass")
	runs := flag.Int("runs", 3, "repetitions of the raw and full measurements (interleaved; medians are reported)")
	rates := flag.String("rates", "100,1000", "Mbit/s caps of the final-pass measurements through the relay")
	delay := flag.Duration("delay", 5*time.Millisecond, "one-way delay of the relay")
	blockSize := flag.Int("block-size", 0, "rsync block size (0: rsync's default, as the agent ships)")
	fullRate := flag.Int64("full-rate", 1000, "Mbit/s cap of a second full-vs-raw comparison through the relay (0: skip)")
	work := flag.String("dir", "", "work directory (default: a temporary directory, removed at the end)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the raw and full runs to this file")
	finalRuns := flag.Int("final-runs", 0, "repetitions of the side-by-side final pass measurement, rsync vs block delta, at each rate (0: -runs)")
	finalOnly := flag.Bool("final-only", false, "skip the raw/full/rsync full-pass comparison (one tar first pass, then the delta and final measurements)")
	flag.Parse()
	profile = *cpuProfile
	if *finalRuns <= 0 {
		*finalRuns = *runs
	}
	if *finalOnly {
		*runs, *fullRate = 0, 0
	}
	if err := run(*size, *files, *dirtyPct, *runs, *finalRuns, *rates, *delay, *blockSize, *fullRate, *work); err != nil {
		fmt.Fprintln(os.Stderr, "bench-replication:", err)
		os.Exit(1)
	}
}

// profile is the -cpuprofile file ("" for none).
var profile string

type side struct {
	server *tls.Config
	client *tls.Config
}

func credentials() (side, error) {
	b, err := certs.Mint(certs.Options{MigrationUID: uid, Validity: time.Hour})
	if err != nil {
		return side{}, err
	}
	s, err := certs.TLSConfig(b.Credentials(certs.RoleTarget), certs.RoleTarget, uid, nil)
	if err != nil {
		return side{}, err
	}
	c, err := certs.TLSConfig(b.Credentials(certs.RoleSource), certs.RoleSource, uid, nil)
	return side{server: s, client: c}, err
}

// receiver serves dest and returns its address.
func receiver(ctx context.Context, tc side, dest string) (string, error) {
	l, err := transport.Listen("127.0.0.1:0", tc.server)
	if err != nil {
		return "", err
	}
	recv := &protocol.Receiver{DestDir: dest, Rsync: &rsync.Daemon{DestDir: dest}}
	go func() {
		<-ctx.Done()
		_ = l.Close()
		_ = recv.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _ = recv.ServeConn(ctx, c) }()
		}
	}()
	return l.Addr().String(), nil
}

func run(size int64, nfiles int, dirtyPct float64, runs, finalRuns int, rates string, delay time.Duration, blockSize int, fullRate int64, work string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root (the rsync receiver chroots into the target)")
	}
	if work == "" {
		d, err := os.MkdirTemp("", "bench-replication-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, dst, raw := filepath.Join(work, "src"), filepath.Join(work, "dst"), filepath.Join(work, "raw")
	for _, d := range []string{src, dst, raw} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(42, 7))
	per := size / int64(nfiles)
	fmt.Printf("volume: %s in %d files, rsync %s, dirty %.1f%% of 4 KiB blocks\n", human(size), nfiles, rsyncVersion(), dirtyPct)
	for i := range nfiles {
		if err := writeRandom(filepath.Join(src, fmt.Sprintf("data-%02d.bin", i)), per, rng); err != nil {
			return err
		}
	}
	tc, err := credentials()
	if err != nil {
		return err
	}

	// Raw baseline over the same mTLS transport, interleaved with the full
	// passes (raw, full, raw, full, ...) so that both see the same machine
	// load; each starts from an empty destination directory.
	rawAddr, err := rawReceiver(ctx, tc, raw)
	if err != nil {
		return err
	}
	addr, err := receiver(ctx, tc, dst)
	if err != nil {
		return err
	}
	dial := func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, addr, tc.client) }
	opts := protocol.SendOptions{SourceDir: src, Dial: dial, BlockSize: blockSize}
	// The rsync full pass as the agent ran it before the tar stream (and
	// still runs it into a non-empty target): sparse files detected.
	rsyncOpts := opts
	rsyncOpts.DetectSparse = true
	var rawTimes, fullTimes, rsyncTimes, rawCPU, fullCPU, rsyncCPU []time.Duration
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
	}
	for i := range runs {
		if err := emptyDir(raw); err != nil {
			return err
		}
		c0 := cpuTime()
		d, err := rawCopy(ctx, tc, rawAddr, src)
		if err != nil {
			return fmt.Errorf("raw copy: %w", err)
		}
		rc := cpuTime() - c0
		fmt.Printf("raw copy run %d: %s (%s/s), cpu %s\n", i+1, d.Round(time.Millisecond), human(int64(float64(size)/d.Seconds())), rc.Round(time.Millisecond))
		rawTimes, rawCPU = append(rawTimes, d), append(rawCPU, rc)

		if err := emptyDir(dst); err != nil {
			return err
		}
		c0 = cpuTime()
		r, d, err := enginePass(ctx, src, dial, blockSize)
		if err != nil {
			return fmt.Errorf("full pass: %w", err)
		}
		fc := cpuTime() - c0
		fmt.Printf("full pass (tar stream) run %d: %s (%s/s), cpu %s, wire sent %s\n", i+1, d.Round(time.Millisecond), human(int64(float64(size)/d.Seconds())), fc.Round(time.Millisecond), human(r.WireSent))
		fullTimes, fullCPU = append(fullTimes, d), append(fullCPU, fc)

		if err := emptyDir(dst); err != nil {
			return err
		}
		c0 = cpuTime()
		start := time.Now()
		r, err = rsync.Send(ctx, rsyncOpts)
		if err != nil {
			return fmt.Errorf("rsync full pass: %w", err)
		}
		d = time.Since(start)
		fc = cpuTime() - c0
		fmt.Printf("rsync full pass run %d: %s (%s/s), cpu %s, wire sent %s\n", i+1, d.Round(time.Millisecond), human(int64(float64(size)/d.Seconds())), fc.Round(time.Millisecond), human(r.WireSent))
		rsyncTimes, rsyncCPU = append(rsyncTimes, d), append(rsyncCPU, fc)
	}
	pprof.StopCPUProfile()
	if runs > 0 {
		if err := same(src, dst); err != nil {
			return err
		}
	}
	// The delta and final passes below start from a tar first pass.
	if err := emptyDir(dst); err != nil {
		return err
	}
	if _, _, err := enginePass(ctx, src, dial, blockSize); err != nil {
		return fmt.Errorf("full pass: %w", err)
	}
	rawMed, fullMed := median(rawTimes), median(fullTimes)
	if err := same(src, dst); err != nil {
		return err
	}
	var limitedRatio float64
	if fullRate > 0 {
		link := relay.Link{Delay: delay, BytesPerSecond: fullRate * 1000 * 1000 / 8}
		rawRelay, err := relay.Start(ctx, relay.Symmetric(rawAddr, link))
		if err != nil {
			return err
		}
		if err := emptyDir(raw); err != nil {
			return err
		}
		rd, err := rawCopy(ctx, tc, rawRelay.Addr(), src)
		_ = rawRelay.Close()
		if err != nil {
			return fmt.Errorf("raw copy through the relay: %w", err)
		}
		rsRelay, err := relay.Start(ctx, relay.Symmetric(addr, link))
		if err != nil {
			return err
		}
		if err := emptyDir(dst); err != nil {
			return err
		}
		_, fd, err := enginePass(ctx, src, func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, rsRelay.Addr(), tc.client) }, blockSize)
		_ = rsRelay.Close()
		if err != nil {
			return fmt.Errorf("full pass through the relay: %w", err)
		}
		limitedRatio = rd.Seconds() / fd.Seconds()
		fmt.Printf("through the relay at %d Mbit/s (+%s one-way): raw %s (%s/s), full pass %s (%s/s), ratio full/raw %.2f\n",
			fullRate, delay, rd.Round(time.Millisecond), human(int64(float64(size)/rd.Seconds())), fd.Round(time.Millisecond),
			human(int64(float64(size)/fd.Seconds())), limitedRatio)
		if err := same(src, dst); err != nil {
			return err
		}
	}
	_ = os.RemoveAll(raw)

	// Delta after dirtying 1% of the blocks.
	changed, err := dirty(src, dirtyPct, rng)
	if err != nil {
		return err
	}
	delta, err := rsync.Send(ctx, opts)
	if err != nil {
		return fmt.Errorf("delta pass: %w", err)
	}
	if err := same(src, dst); err != nil {
		return err
	}
	deltaPct := 100 * float64(delta.WireSent) / float64(size)
	fmt.Printf("delta pass: %d blocks (%s) changed; %s, wire sent %s (%.2f%% of the volume), received %s (block checksums), literal data %s, matched %s\n",
		changed, human(changed*4096), delta.Duration.Round(time.Millisecond), human(delta.WireSent), deltaPct, human(delta.WireReceived),
		human(delta.Stats.LiteralData), human(delta.Stats.MatchedData))

	// Final pass under freeze through the rate-limited relay: with the
	// whole-tree verification (as before the pre-freeze verification), and
	// after a pre-freeze verification by rsync and by block delta, for 1%
	// of the blocks changed spread over every file and concentrated in one
	// file; then rsync and block delta side by side.
	var finalRatio float64
	var finalRate int64
	for _, f := range strings.Split(rates, ",") {
		var mbit int64
		if _, err := fmt.Sscan(strings.TrimSpace(f), &mbit); err != nil || mbit <= 0 {
			return fmt.Errorf("bad rate %q", f)
		}
		link := relay.Link{Delay: delay, BytesPerSecond: mbit * 1000 * 1000 / 8}
		rl, err := relay.Start(ctx, relay.Symmetric(addr, link))
		if err != nil {
			return err
		}
		relayDial := func(ctx context.Context) (net.Conn, error) { return transport.Dial(ctx, rl.Addr(), tc.client) }
		for _, spread := range []bool{true, false} {
			for _, m := range []finalMode{finalWhole, finalRsync, finalBlocks} {
				if _, err := finalPass(ctx, src, dst, relayDial, blockSize, mbit, delay, spread, m, dirtyPct, size, rng); err != nil {
					_ = rl.Close()
					return err
				}
			}
		}
		// Side by side: the rsync final path and the block delta, both
		// after a pre-freeze verification, 1% spread over every file,
		// interleaved.
		var rs, bd, rsCPU, bdCPU []time.Duration
		for range finalRuns {
			for _, m := range []finalMode{finalRsync, finalBlocks} {
				fr, err := finalPass(ctx, src, dst, relayDial, blockSize, mbit, delay, true, m, dirtyPct, size, rng)
				if err != nil {
					_ = rl.Close()
					return err
				}
				if m == finalRsync {
					rs, rsCPU = append(rs, fr.wall), append(rsCPU, fr.cpu)
				} else {
					bd, bdCPU = append(bd, fr.wall), append(bdCPU, fr.cpu)
				}
			}
		}
		_ = rl.Close()
		finalRatio = median(rs).Seconds() / median(bd).Seconds()
		finalRate = mbit
		fmt.Printf("final under freeze at %d Mbit/s, %.0f%% of the blocks changed spread over every file, after a pre-freeze verification, median of %d interleaved runs: rsync %s (cpu %s), block delta %s (cpu %s); ratio rsync/block delta %.2f\n",
			mbit, dirtyPct, finalRuns, median(rs).Round(time.Millisecond), median(rsCPU).Round(time.Millisecond),
			median(bd).Round(time.Millisecond), median(bdCPU).Round(time.Millisecond), finalRatio)
	}
	if err := same(src, dst); err != nil {
		return err
	}
	var ratio float64
	if runs > 0 {
		ratio = rawMed.Seconds() / fullMed.Seconds()
		rsyncMed := median(rsyncTimes)
		fmt.Printf("loopback, unlimited, median of %d interleaved runs: raw %s (cpu %s), full (tar stream) %s (cpu %s), rsync full %s (cpu %s); rsync full/raw %.2f\n", runs,
			rawMed.Round(time.Millisecond), median(rawCPU).Round(time.Millisecond), fullMed.Round(time.Millisecond), median(fullCPU).Round(time.Millisecond),
			rsyncMed.Round(time.Millisecond), median(rsyncCPU).Round(time.Millisecond), rawMed.Seconds()/rsyncMed.Seconds())
	}
	fmt.Printf("ratio full/raw: %.2f, delta sent: %.2f%%, final rsync/block delta at %d Mbit/s: %.2f\n", ratio, deltaPct, finalRate, finalRatio)
	return nil
}

// finalMode is how a measured final pass runs.
type finalMode int

const (
	// finalWhole: no pre-freeze verification; rsync pass and whole-tree
	// verification.
	finalWhole finalMode = iota
	// finalRsync: after a pre-freeze verification, the rsync pass and a
	// verification of what changed (the block delta disabled).
	finalRsync
	// finalBlocks: after a pre-freeze verification (which indexes the
	// target), the block delta.
	finalBlocks
)

func (m finalMode) String() string {
	return [...]string{"whole-tree verification", "pre-verified, rsync", "pre-verified, block delta"}[m]
}

type finalRun struct {
	wall, cpu time.Duration
}

// finalPass runs a pre-freeze verification (not timed: the application
// still runs) unless mode is finalWhole, dirties the source (spread over
// every file, or the same number of blocks in one file), then runs the
// engine's final pass and prints its time and CPU time (both ends and rsync
// children). A block delta that falls back to rsync is an error, and its
// target is compared with the source after every run.
func finalPass(ctx context.Context, src, dst string, dial func(context.Context) (net.Conn, error), blockSize int, mbit int64, delay time.Duration,
	spread bool, mode finalMode, dirtyPct float64, size int64, rng *rand.Rand) (finalRun, error) {
	var passes []engine.PassResult
	cfg := engine.Config{SourceDir: src, Dial: dial, BlockSize: blockSize, MaxRounds: 1,
		DisableBlockDelta: mode != finalBlocks,
		OnPass:            func(p engine.PassResult) { passes = append(passes, p) }}
	var pre time.Duration
	if mode != finalWhole {
		cfg.Verified = engine.NewVerifyState()
	}
	s, err := engine.NewSession(cfg)
	if err != nil {
		return finalRun{}, err
	}
	if mode != finalWhole {
		start := time.Now()
		if _, err := s.PreVerify(ctx, 1); err != nil {
			return finalRun{}, fmt.Errorf("pre-freeze verification: %w", err)
		}
		pre = time.Since(start)
	}
	pattern := "spread over every file"
	if spread {
		_, err = dirty(src, dirtyPct, rng)
	} else {
		pattern = "in one file"
		_, err = dirtyOne(src, dirtyPct, size, rng)
	}
	if err != nil {
		return finalRun{}, err
	}
	passes = passes[:0]
	c0 := cpuTime()
	res, err := s.Final(ctx, 2)
	cpu := cpuTime() - c0
	if err != nil {
		return finalRun{}, fmt.Errorf("final pass at %d Mbit/s: %w", mbit, err)
	}
	if mode == finalBlocks && res.Method != engine.FinalBlockDelta {
		return finalRun{}, fmt.Errorf("the final pass fell back to rsync (%s): %s", res.Fallback, res.FallbackDetail)
	}
	var verify time.Duration
	for _, p := range passes {
		if p.Pass == engine.PassVerify {
			verify += p.Duration
		}
	}
	fmt.Printf("final under freeze at %d Mbit/s (+%s one-way), %.0f%% of the blocks changed %s, %s: %s total (cpu %s) = delta %s (wire sent %s, literal %s)",
		mbit, delay, dirtyPct, pattern, mode, res.Downtime.Round(time.Millisecond), cpu.Round(time.Millisecond), res.Delta.Duration.Round(time.Millisecond),
		human(res.Delta.WireSent), human(res.Delta.Stats.LiteralData))
	if res.Method == engine.FinalRsync {
		fmt.Printf(" + verify %s", verify.Round(time.Millisecond))
	}
	fmt.Printf(" (%s); repairs %d", res.Counts, res.Repairs)
	if mode != finalWhole {
		fmt.Printf("; pre-freeze verification took %s", pre.Round(time.Millisecond))
	}
	fmt.Println()
	if mode == finalBlocks {
		// The block delta is new: check every run (not timed).
		if err := same(src, dst); err != nil {
			return finalRun{}, err
		}
	}
	return finalRun{wall: res.Downtime, cpu: cpu}, nil
}

// dirtyOne rewrites, in the first file, as many random 4 KiB blocks as pct%
// of the whole volume's blocks; it returns the number of blocks changed.
func dirtyOne(dir string, pct float64, size int64, rng *rand.Rand) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return 0, fmt.Errorf("no file to dirty in %s: %v", dir, err)
	}
	p := filepath.Join(dir, entries[0].Name())
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	blocks := st.Size() / 4096
	n := min(int64(float64(size/4096)*pct/100), blocks)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	block := make([]byte, 4096)
	picked := map[int64]bool{}
	for int64(len(picked)) < n {
		b := rng.Int64N(blocks)
		if picked[b] {
			continue
		}
		picked[b] = true
		for i := 0; i < len(block); i += 8 {
			binary.LittleEndian.PutUint64(block[i:], rng.Uint64())
		}
		if _, err := f.WriteAt(block, b*4096); err != nil {
			return 0, err
		}
	}
	return n, f.Close()
}

// enginePass runs the first replication pass exactly as the agent does
// (engine round 1: a tar stream into the empty target) and fails if it did
// not go as a tar stream.
func enginePass(ctx context.Context, src string, dial func(context.Context) (net.Conn, error), blockSize int) (protocol.Result, time.Duration, error) {
	var pass engine.PassResult
	s, err := engine.NewSession(engine.Config{SourceDir: src, Dial: dial, BlockSize: blockSize, MaxRounds: 1,
		OnPass: func(p engine.PassResult) { pass = p }})
	if err != nil {
		return protocol.Result{}, 0, err
	}
	start := time.Now()
	if _, err := s.PreCopy(ctx, 0); err != nil {
		return pass.Result, 0, err
	}
	d := time.Since(start)
	if !pass.TarStream {
		return pass.Result, d, fmt.Errorf("the first pass did not use the tar stream")
	}
	return pass.Result, d, nil
}

// rawReceiver accepts connections carrying "name\n" + bytes and writes each
// to a file in dir.
func rawReceiver(ctx context.Context, tc side, dir string) (string, error) {
	l, err := transport.Listen("127.0.0.1:0", tc.server)
	if err != nil {
		return "", err
	}
	go func() {
		<-ctx.Done()
		_ = l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var n uint16
				if err := binary.Read(c, binary.BigEndian, &n); err != nil {
					return
				}
				name := make([]byte, n)
				if _, err := io.ReadFull(c, name); err != nil {
					return
				}
				f, err := os.Create(filepath.Join(dir, filepath.Base(string(name))))
				if err != nil {
					return
				}
				_, _ = io.Copy(f, c)
				_ = f.Close()
				_, _ = c.Write([]byte{1})
			}()
		}
	}()
	return l.Addr().String(), nil
}

// rawCopy sends every file of dir, one connection after another (as rsync
// does over its single connection), and returns the wall time.
func rawCopy(ctx context.Context, tc side, addr, dir string) (time.Duration, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for _, e := range entries {
		c, err := transport.Dial(ctx, addr, tc.client)
		if err != nil {
			return 0, err
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		_ = binary.Write(c, binary.BigEndian, uint16(len(e.Name())))
		_, _ = io.WriteString(c, e.Name())
		if _, err := io.Copy(c, f); err != nil {
			return 0, err
		}
		_ = f.Close()
		_ = c.CloseWrite()
		ack := make([]byte, 1)
		if _, err := io.ReadFull(c, ack); err != nil {
			return 0, fmt.Errorf("no acknowledgement: %w", err)
		}
		_ = c.Close()
	}
	return time.Since(start), nil
}

func writeRandom(path string, n int64, rng *rand.Rand) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for n > 0 {
		for i := 0; i < len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
		}
		k := int64(len(buf))
		if k > n {
			k = n
		}
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		n -= k
	}
	return f.Close()
}

// dirty rewrites pct% of the 4 KiB blocks of every file, chosen at random,
// keeping sizes; it returns the number of blocks changed.
func dirty(dir string, pct float64, rng *rand.Rand) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	block := make([]byte, 4096)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p)
		if err != nil {
			return 0, err
		}
		blocks := st.Size() / 4096
		n := int64(float64(blocks) * pct / 100)
		picked := map[int64]bool{}
		for int64(len(picked)) < n {
			picked[rng.Int64N(blocks)] = true
		}
		idx := make([]int64, 0, n)
		for b := range picked {
			idx = append(idx, b)
		}
		sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		for _, b := range idx {
			for i := 0; i < len(block); i += 8 {
				binary.LittleEndian.PutUint64(block[i:], rng.Uint64())
			}
			if _, err := f.WriteAt(block, b*4096); err != nil {
				f.Close()
				return 0, err
			}
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

func same(a, b string) error {
	d, err := treediff.Compare(a, b, treediff.Options{})
	if err != nil {
		return err
	}
	if len(d) != 0 {
		return fmt.Errorf("target differs from source: %v", d)
	}
	return nil
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// median returns the median of ds (the mean of the middle two for an even
// count).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cpuTime is the user+system CPU time of this process and of its waited-for
// children (the rsync processes) so far.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}

func rsyncVersion() string {
	out, err := execOutput("rsync", "--version")
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(out, "\n")
	return strings.TrimSpace(line)
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
