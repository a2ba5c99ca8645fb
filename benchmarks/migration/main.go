// Command migration measures live-migration downtime in the lab
// (test/lab) against two baselines measured in the same run, over the same
// simulated WAN link (test/lab/relay):
//
//   - migration: a StatefulSet of the lab app (test/labapp) holding a given
//     amount of memory, with a local volume prefilled with random data, is
//     live-migrated from member1 to member2 with `kubectl livemigrate move
//     --wait` (test/e2e/migration/scenario). Once the pre-copy's first
//     (full) pass is done, a share of the volume's 4 KiB blocks is
//     rewritten, so the final sync has a delta to send. The lab runs with
//     lab.Options.WANDataPath: the source agent pushes the checkpoint image
//     to the registry at the target's site and the agents replicate the
//     volume, both through relays carrying the link between the two
//     members. Downtime is the LiveMigration's status.downtime (freeze to
//     target Ready).
//   - floor: (checkpoint bytes + final delta bytes) ÷ the link's throughput,
//     measured by a raw TCP copy of the volume's bytes through a relay with
//     the same link.
//   - evict-and-recreate: that raw copy's time (the cold volume copy while
//     the app is stopped) plus the time a new lab app takes from its
//     creation in the Karmada plane to running in a member (measured when
//     each size's app is deployed). Its ratio to the floor is the largest
//     speedup a migration could reach at all (it moves the memory during
//     the downtime, evict-and-recreate does not): the table's last column.
//
// A second table splits the downtime by phase, with the agent's push time
// from the PodCheckpoints and the target pod's creation from a watch.
//
// One lab is started per rate. The table is printed at the end, then
// "max downtime/(floor+200ms): R, min speedup vs evict-and-recreate: S".
// It needs root and rsync, like the migration end-to-end test.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/hooks/agentcr"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// slack is the fixed allowance of the goal: downtime ≤ 1.3 × floor + slack.
const slack = 200 * time.Millisecond

type config struct {
	sizes  []string
	rates  []int64
	volume int64
	files  int
	dirty  float64
	delay  time.Duration
	budget time.Duration
	// keepDir keeps each lab's directory after the run.
	keepDir bool
}

// row is one migration and its baselines.
type row struct {
	rate            int64
	memory          string
	checkpointBytes int64
	finalDelta      int64
	preCopy         int64
	downtime        time.Duration
	throughput      float64 // bytes per second, raw copy through the relay
	floor           time.Duration
	coldCopy        time.Duration
	appStart        time.Duration
	// phases are the durations of the downtime's phases (Checkpointing
	// through Verifying), from the LiveMigration's timeline.
	phases map[lmv1alpha1.LiveMigrationPhase]time.Duration
	// dumpPush is from status.frozenAt to the images recorded (entering
	// Restoring): the dump and the push, with the rebinding and the final
	// sync beside them; push is the longest container push the agent
	// reported (PodCheckpoint status.containers[].pushDuration; 0 when not
	// reported).
	dumpPush, push time.Duration
	// podCreated is from entering Rebinding to the target pod's creation
	// seen by a watch on the target (Karmada propagation, admission; the
	// pod is then held by the checkpoint-image scheduling gate while the
	// push goes on). Zero when the pod was not seen.
	podCreated time.Duration
	// imagesToReady is from the images recorded (entering Restoring) to
	// the target Ready: ungating, scheduling, the local pull, the restore,
	// readiness.
	imagesToReady time.Duration
	// criu are CRIU's own times, from the node runtimes' logs (zero with
	// the memory stand-in).
	criu criuTimes
	err  error
}

// criuTimes are what the lab's runc node runtimes log of one migration's
// dump and restore: runc checkpoint's wall time and CRIU's frozen time
// (stats-dump), and CRIU's restore time (stats-restore) and runc
// restore's wall time to the app running.
type criuTimes struct {
	dump, frozen, restore, restoreWall time.Duration
}

func (r row) evict() time.Duration { return r.coldCopy + r.appStart }

// bound is the largest speedup over evict-and-recreate a migration at the
// floor could reach: evict-and-recreate does not move the memory, a live
// migration must move it during the downtime.
func (r row) bound() float64 { return r.evict().Seconds() / r.floor.Seconds() }

// downtimePhases are the phases between the freeze and the target Ready.
var downtimePhases = []lmv1alpha1.LiveMigrationPhase{
	lmv1alpha1.PhaseCheckpointing, lmv1alpha1.PhaseRebinding, lmv1alpha1.PhaseFinalSync,
	lmv1alpha1.PhaseTransfer, lmv1alpha1.PhaseRestoring, lmv1alpha1.PhaseVerifying,
}

// phaseDurations returns how long each phase of the timeline lasted.
func phaseDurations(lm *lmv1alpha1.LiveMigration) map[lmv1alpha1.LiveMigrationPhase]time.Duration {
	ts := lm.Status.PhaseTransitions
	out := map[lmv1alpha1.LiveMigrationPhase]time.Duration{}
	for i := 0; i+1 < len(ts); i++ {
		out[ts[i].Phase] = ts[i+1].EnteredAt.Sub(ts[i].EnteredAt.Time)
	}
	return out
}

// watchFirstPod watches the pods of namespace ns in cluster c and returns
// a function reporting when the first one was seen created (zero until
// then). The watch ends with ctx.
func watchFirstPod(ctx context.Context, c *scenario.Cluster, ns string) func() time.Time {
	var mu sync.Mutex
	var at time.Time
	get := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return at
	}
	if c == nil {
		return get
	}
	w, err := c.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Printf("  watching pods of %s in %s: %v\n", ns, c.Name, err)
		return get
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added {
				mu.Lock()
				at = time.Now()
				mu.Unlock()
				return
			}
		}
	}()
	return get
}

// pushTime returns the longest checkpoint image push the agent reported
// in the migration's PodCheckpoints (measured by the agent around the
// upload; the PodCheckpoint's checkpointDuration is not used: it counts
// from freezeStartTime, which the API keeps to the second).
func pushTime(ctx context.Context, env *scenario.Env, lm *lmv1alpha1.LiveMigration) (time.Duration, error) {
	src := env.Members[lm.Status.SourceCluster]
	if src == nil {
		return 0, fmt.Errorf("no member %q", lm.Status.SourceCluster)
	}
	var pcs agentv1alpha1.PodCheckpointList
	if err := src.CR.List(ctx, &pcs, client.InNamespace(lm.Namespace), client.MatchingLabels{agentcr.LabelMigrationUID: string(lm.UID)}); err != nil {
		return 0, err
	}
	var push time.Duration
	for _, pc := range pcs.Items {
		for _, c := range pc.Status.Containers {
			if c.PushDuration != nil && c.PushDuration.Duration > push {
				push = c.PushDuration.Duration
			}
		}
	}
	return push, nil
}

func main() {
	sizes := flag.String("sizes", "64Mi,256Mi,1Gi", "lab app memory sizes (quantities)")
	rates := flag.String("rates", "100,1000", "link bandwidth caps in Mbit/s; one lab per rate")
	volume := flag.String("volume", "1Gi", "volume size (quantity)")
	files := flag.Int("files", 16, "files the volume is split into")
	dirty := flag.Float64("dirty", 1, "percentage of the volume's 4 KiB blocks rewritten after the pre-copy's full pass")
	delay := flag.Duration("delay", 5*time.Millisecond, "one-way delay between the two members")
	keep := flag.Bool("keep-lab-dir", false, "keep each lab's directory (the components' logs, e.g. the node runtimes' pull and restore timings) after the run, and print where it is")
	budget := flag.Duration("downtime-budget", 10*time.Minute, "spec.downtimeBudget of each migration (large: the benchmark measures, it does not refuse)")
	flag.Parse()
	cfg := config{files: *files, dirty: *dirty, delay: *delay, budget: *budget, keepDir: *keep}
	for _, s := range strings.Split(*sizes, ",") {
		if _, err := resource.ParseQuantity(s); err != nil {
			fatal(fmt.Errorf("size %q: %w", s, err))
		}
		cfg.sizes = append(cfg.sizes, s)
	}
	for _, s := range strings.Split(*rates, ",") {
		r, err := strconv.ParseInt(s, 10, 64)
		if err != nil || r <= 0 {
			fatal(fmt.Errorf("rate %q: want Mbit/s", s))
		}
		cfg.rates = append(cfg.rates, r)
	}
	q, err := resource.ParseQuantity(*volume)
	if err != nil {
		fatal(fmt.Errorf("volume: %w", err))
	}
	cfg.volume = q.Value()
	if os.Geteuid() != 0 {
		fatal(fmt.Errorf("must run as root (cgroup freezer, /proc/<pid>/mem, the replication receiver's chroot)"))
	}
	fmt.Printf("load average before: %s\n", loadavg())
	var rows []row
	for _, rate := range cfg.rates {
		rs, err := runRate(cfg, rate)
		rows = append(rows, rs...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-migration: %d Mbit/s: %v\n", rate, err)
		}
	}
	fmt.Printf("load average after: %s\n", loadavg())
	report(os.Stdout, rows)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench-migration:", err)
	os.Exit(1)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// runRate starts a lab whose two members are linked at rate Mbit/s, measures
// the link and migrates one app per size.
func runRate(cfg config, rate int64) ([]row, error) {
	ctx := context.Background()
	bps := rate * 1000 * 1000 / 8
	half := cfg.delay / 2
	opts := lab.Options{
		MemberSpecs: []lab.MemberSpec{
			{Name: "member1", Nodes: 1, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: half}, BytesPerSecond: bps}},
			{Name: "member2", Nodes: 1, Position: lab.NetworkPosition{Delay: metav1.Duration{Duration: cfg.delay - half}, BytesPerSecond: bps}},
		},
		WANDataPath: true,
		KeepDir:     cfg.keepDir,
	}
	start := time.Now()
	l, err := lab.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("starting the lab: %w", err)
	}
	defer l.Stop()
	fmt.Printf("\n== %d Mbit/s, %s one-way: lab up in %s\n", rate, cfg.delay, time.Since(start).Round(100*time.Millisecond))
	if cfg.keepDir {
		fmt.Printf("  lab directory (kept): %s\n", l.Dir)
	}
	root, err := lab.RepoRoot()
	if err != nil {
		return nil, err
	}
	env, err := scenario.FromLab(l, filepath.Join(root, "bin"), io.Discard, func(f string, a ...any) { fmt.Printf("  "+f+"\n", a...) })
	if err != nil {
		return nil, err
	}

	// The volume's content, reused by every app (copied into each source
	// volume) and by the raw copy.
	src := filepath.Join(l.Dir, "bench-volume")
	if err := writeVolume(src, cfg.volume, cfg.files); err != nil {
		return nil, err
	}
	copyTime, err := rawCopy(ctx, l, src)
	if err != nil {
		return nil, fmt.Errorf("raw copy: %w", err)
	}
	throughput := float64(cfg.volume) / copyTime.Seconds()
	fmt.Printf("  raw copy of %d MiB through the relay: %s, %.1f Mbit/s\n", cfg.volume>>20, copyTime.Round(time.Millisecond), throughput*8/1e6)

	var rows []row
	for i, size := range cfg.sizes {
		r := row{rate: rate, memory: size, throughput: throughput, coldCopy: copyTime}
		r.err = migrate(ctx, env, cfg, fmt.Sprintf("bench-%d", i), size, src, &r)
		if r.err != nil {
			fmt.Printf("  %s: %v\n", size, r.err)
		}
		rows = append(rows, r)
		if lerr := l.Err(); lerr != nil {
			return rows, lerr
		}
	}
	return rows, nil
}

// migrate deploys one app of the given memory with a copy of the volume in
// member1, moves it to member2 and fills r.
func migrate(ctx context.Context, env *scenario.Env, cfg config, ns, memory, volume string, r *row) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	const name = "db"
	// Deploy puts the source volume here (scenario.Env.Deploy).
	dir := filepath.Join(env.Paths.Dir, "disks", "member1", ns, "data-"+name+"-0")
	if err := copyTree(volume, dir); err != nil {
		return err
	}
	start := time.Now()
	app, err := env.Deploy(ctx, ns, name, scenario.AppOptions{Cluster: "member1", Memory: memory})
	if err != nil {
		return err
	}
	r.appStart = time.Since(start)
	defer func() {
		if err := app.Delete(context.Background()); err != nil {
			fmt.Printf("  deleting %s/%s: %v\n", ns, name, err)
		}
	}()
	if _, err := app.WaitRunning(ctx, "member1", 50); err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	podSeen := watchFirstPod(watchCtx, env.Members["member2"], ns)
	obs, err := app.Move(ctx, scenario.MoveOptions{
		To: "member2", Name: name + "-to-member2",
		Args:        []string{"--downtime-budget=" + cfg.budget.String()},
		DuringPhase: lmv1alpha1.PhasePreCopy,
		During: func(ctx context.Context, _ *lmv1alpha1.LiveMigration) error {
			return dirtyAfterFullPass(ctx, env, ns, dir, cfg)
		},
	})
	if err != nil {
		return err
	}
	lm := obs.Migration
	if obs.Err != nil || lm.Status.Phase != lmv1alpha1.PhaseSucceeded || lm.Status.Downtime == nil {
		return fmt.Errorf("migration %s: %v; %s", lm.Status.Phase, obs.Err, scenario.Timeline(lm))
	}
	r.downtime = lm.Status.Downtime.Duration
	r.checkpointBytes = lm.Status.Bytes.Memory
	r.finalDelta = lm.Status.Bytes.FinalDelta
	r.preCopy = lm.Status.Bytes.VolumePreCopy
	r.floor = time.Duration(float64(r.checkpointBytes+r.finalDelta) / r.throughput * float64(time.Second))
	r.phases = phaseDurations(lm)
	for _, pt := range lm.Status.PhaseTransitions {
		switch pt.Phase {
		case lmv1alpha1.PhaseRebinding:
			if at := podSeen(); !at.IsZero() {
				r.podCreated = at.Sub(pt.EnteredAt.Time)
			}
		case lmv1alpha1.PhaseRestoring:
			if lm.Status.FrozenAt != nil {
				r.dumpPush = pt.EnteredAt.Sub(lm.Status.FrozenAt.Time)
			}
			if lm.Status.TargetReadyAt != nil {
				r.imagesToReady = lm.Status.TargetReadyAt.Sub(pt.EnteredAt.Time)
			}
		}
	}
	if r.push, err = pushTime(ctx, env, lm); err != nil {
		fmt.Printf("  reading the PodCheckpoints: %v\n", err)
	}
	if r.criu, err = readCRIUTimes(filepath.Join(env.Paths.Dir, "logs"), ns+"/"+name+"-0"); err != nil {
		fmt.Printf("  reading CRIU's times: %v\n", err)
	}
	fmt.Printf("  %s: downtime %s (floor %s), checkpoint %d MiB, final delta %.1f MiB, pre-copy %d MiB, app start %s; move --wait took %s\n",
		memory, r.downtime.Round(time.Millisecond), r.floor.Round(time.Millisecond), r.checkpointBytes>>20, float64(r.finalDelta)/(1<<20),
		r.preCopy>>20, r.appStart.Round(time.Millisecond), obs.Duration.Round(time.Millisecond))
	fmt.Printf("%s\n", indent(scenario.Timeline(lm)))
	fmt.Printf("    CRIU: runc checkpoint %s (CRIU frozen %s), CRIU restore %s (runc restore to the app running %s)\n",
		r.criu.dump.Round(time.Millisecond), r.criu.frozen.Round(time.Millisecond), r.criu.restore.Round(time.Millisecond), r.criu.restoreWall.Round(time.Millisecond))
	fmt.Printf("    frozen → images recorded %s (agent's push %s); Rebinding → target pod created (gated) %s; images recorded → target Ready %s\n",
		r.dumpPush.Round(time.Millisecond), r.push.Round(time.Millisecond), r.podCreated.Round(time.Millisecond), r.imagesToReady.Round(time.Millisecond))
	return nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// dirtyAfterFullPass waits until the volume's first pre-copy pass is done
// and, if the migration is still in PreCopy, rewrites cfg.dirty percent of
// the volume's 4 KiB blocks (picked at random).
func dirtyAfterFullPass(ctx context.Context, env *scenario.Env, ns, dir string, cfg config) error {
	for {
		var list lmv1alpha1.LiveMigrationList
		if err := env.Karmada.CR.List(ctx, &list); err != nil {
			return err
		}
		for _, lm := range list.Items {
			if lm.Namespace != ns {
				continue
			}
			if lm.Status.Phase != lmv1alpha1.PhasePreCopy {
				fmt.Printf("  no blocks dirtied: the migration left PreCopy (%s) before its first pass was seen\n", lm.Status.Phase)
				return nil
			}
			if len(lm.Status.Volumes) > 0 && lm.Status.Volumes[0].Rounds >= 1 {
				n, err := dirtyBlocks(dir, cfg.dirty)
				if err == nil {
					fmt.Printf("  dirtied %d blocks (%.1f MiB) after pre-copy round %d\n", n, float64(n*4096)/(1<<20), lm.Status.Volumes[0].Rounds)
				}
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dirtyBlocks rewrites pct percent of the 4 KiB blocks of the volume's
// data files with new random bytes.
func dirtyBlocks(dir string, pct float64) (int, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "data-*"))
	if err != nil || len(paths) == 0 {
		return 0, fmt.Errorf("no data files in %s: %v", dir, err)
	}
	n := 0
	buf := make([]byte, 4096)
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return n, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return n, err
		}
		blocks := fi.Size() / 4096
		k := int(float64(blocks) * pct / 100)
		for _, b := range rand.Perm(int(blocks))[:k] {
			fillRandom(buf)
			if _, err := f.WriteAt(buf, int64(b)*4096); err != nil {
				f.Close()
				return n, err
			}
			n++
		}
		if err := f.Close(); err != nil {
			return n, err
		}
	}
	return n, nil
}

func fillRandom(b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rand.Uint64())
	}
}

// writeVolume writes size bytes of random data in files files under dir.
func writeVolume(dir string, size int64, files int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	per := size / int64(files)
	for i := range files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("data-%02d", i)))
		if err != nil {
			return err
		}
		for left := per; left > 0; {
			fillRandom(buf)
			n := min(left, int64(len(buf)))
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return err
			}
			left -= n
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

func copyTree(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// rawCopy streams the volume's files through a relay from member1 to
// member2 into one file on the receiving side, and returns the time from
// the dial until the receiver acknowledged the last byte written.
func rawCopy(ctx context.Context, l *lab.Lab, dir string) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	out := filepath.Join(l.Dir, "bench-raw-copy")
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		f, err := os.Create(out)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, c)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			_, err = c.Write([]byte{1})
		}
		done <- err
	}()
	addr, err := l.Relay("member1", "member2", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	start := time.Now()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(c, f)
		f.Close()
		if err != nil {
			return 0, err
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	ack := make([]byte, 1)
	if _, err := io.ReadFull(c, ack); err != nil {
		return 0, fmt.Errorf("waiting for the receiver: %w", err)
	}
	elapsed := time.Since(start)
	if err := <-done; err != nil {
		return 0, err
	}
	_ = os.Remove(out)
	return elapsed, nil
}

// report prints the tables and the summary line.
func report(w io.Writer, rows []row) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| link | app memory | checkpoint MiB | final delta MiB | link Mbit/s (raw copy) | floor s | downtime s | downtime/(floor+200ms) | evict-and-recreate s (cold copy + start) | speedup | speedup bound (evict-and-recreate ÷ floor) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	maxRatio, minSpeedup := 0.0, 0.0
	ok := 0
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(w, "| %d Mbit/s | %s | failed: %v | | | | | | | | |\n", r.rate, r.memory, r.err)
			continue
		}
		ratio := r.downtime.Seconds() / (r.floor + slack).Seconds()
		speedup := r.evict().Seconds() / r.downtime.Seconds()
		if ok == 0 || ratio > maxRatio {
			maxRatio = ratio
		}
		if ok == 0 || speedup < minSpeedup {
			minSpeedup = speedup
		}
		ok++
		fmt.Fprintf(w, "| %d Mbit/s | %s | %.1f | %.2f | %.1f | %.3f | %.3f | %.2f | %.1f (%.1f + %.1f) | %.1f | %.1f |\n",
			r.rate, r.memory, float64(r.checkpointBytes)/(1<<20), float64(r.finalDelta)/(1<<20), r.throughput*8/1e6,
			r.floor.Seconds(), r.downtime.Seconds(), ratio, r.evict().Seconds(), r.coldCopy.Seconds(), r.appStart.Seconds(), speedup, r.bound())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Where the downtime went (s; phases from the LiveMigration's timeline, push from the agent's PodCheckpoint, target pod creation from a watch on the target):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| link | app memory | Checkpointing (freeze, dump; final sync beside) | Rebinding | FinalSync (wait) | Transfer (push) | Restoring | Verifying | frozen → images recorded (push) | Rebinding → target pod created (gated, beside the push) | images recorded → target Ready (ungate, local pull, restore) | runc checkpoint (CRIU frozen) | CRIU restore (runc restore to app running) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		if r.err != nil {
			continue
		}
		p := r.phases
		fmt.Fprintf(w, "| %d Mbit/s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f (%.2f) | %.2f | %.2f | %.2f (%.2f) | %.2f (%.2f) |\n", r.rate, r.memory,
			p[downtimePhases[0]].Seconds(), p[downtimePhases[1]].Seconds(), p[downtimePhases[2]].Seconds(), p[downtimePhases[3]].Seconds(),
			p[downtimePhases[4]].Seconds(), p[downtimePhases[5]].Seconds(), r.dumpPush.Seconds(), r.push.Seconds(), r.podCreated.Seconds(), r.imagesToReady.Seconds(),
			r.criu.dump.Seconds(), r.criu.frozen.Seconds(), r.criu.restore.Seconds(), r.criu.restoreWall.Seconds())
	}
	fmt.Fprintln(w)
	if ok == 0 {
		fmt.Fprintln(w, "max downtime/(floor+200ms): n/a, min speedup vs evict-and-recreate: n/a (no migration succeeded)")
		os.Exit(1)
	}
	fmt.Fprintf(w, "max downtime/(floor+200ms): %.2f, min speedup vs evict-and-recreate: %.1f\n", maxRatio, minSpeedup)
}

var (
	logValue = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// readCRIUTimes reads the last dump and restore of pod (namespace/name)
// from the node runtimes' logs in dir: their "CRIU dump" and restored
// "Container started" lines. Zero without such lines (the stand-in).
func readCRIUTimes(dir, pod string) (criuTimes, error) {
	var t criuTimes
	logs, err := filepath.Glob(filepath.Join(dir, "labnode-*.log"))
	if err != nil {
		return t, err
	}
	want := `pod="` + pod + `"`
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			return t, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, want) {
				continue
			}
			kv := map[string]string{}
			for _, m := range logValue.FindAllStringSubmatch(line, -1) {
				kv[m[1]] = m[2]
			}
			d := func(k string) time.Duration {
				v, _ := time.ParseDuration(kv[k])
				return v
			}
			switch {
			case strings.Contains(line, `"CRIU dump"`):
				t.dump, t.frozen = d("dump"), d("criuFrozen")
			case strings.Contains(line, `"Container started"`) && strings.Contains(line, "restored=true"):
				t.restore, t.restoreWall = d("criuRestore"), d("duration")
			}
		}
	}
	return t, nil
}
