package labnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

// podSample is one look at a pod's cgroups and tasks.
type podSample struct {
	// at is when the look ended: every read of it came before.
	at time.Time
	// pod and ctr are the freezer.state of the pod's and the container's
	// cgroup read before the tasks, pod2 and ctr2 read after them: the
	// looks are not one instant, and CRIU changes the state between them.
	pod, ctr, pod2, ctr2 string
	// tasks are the container's threads: "<state>" from /proc/<tid>/stat,
	// "+t" when traced (TracerPid not 0).
	tasks []string
	// counter and pending are the lab app's committed counter and tick in
	// flight, read from its memory.
	counter, pending uint64
	// runtimeNS is the threads' total time on a CPU (schedstat), user and
	// kernel.
	runtimeNS uint64
	// utime is the threads' total user time in clock ticks.
	utime uint64
}

// key is the sample without its time and counters, to group samples.
func (s podSample) key() string {
	k := fmt.Sprintf("pod=%s ctr=%s tasks=%s", s.pod, s.ctr, strings.Join(s.tasks, ","))
	if s.pod2 != s.pod || s.ctr2 != s.ctr {
		k += fmt.Sprintf(" then pod=%s ctr=%s", s.pod2, s.ctr2)
	}
	return k
}

func frozenOrFreezing(st string) bool { return st == "FROZEN" || st == "FREEZING" }

// untraced tells whether a thread of the sample was not held by a tracer.
func (s podSample) untraced() bool {
	for _, t := range s.tasks {
		if !strings.HasSuffix(t, "+t") {
			return true
		}
	}
	return false
}

// allTraced tells whether the sample found threads, all held by a tracer.
func (s podSample) allTraced() bool { return len(s.tasks) > 0 && !s.untraced() }

// runnable tells whether a thread of the pod could run user code at the
// sample: neither cgroup FROZEN or FREEZING (a task of a FREEZING cgroup
// never returns to user code), before and after the look at the threads,
// and a thread not held by a tracer.
func (s podSample) runnable() bool {
	for _, st := range []string{s.pod, s.ctr, s.pod2, s.ctr2} {
		if frozenOrFreezing(st) {
			return false
		}
	}
	return s.untraced()
}

// samplePod reads a pod's and its container's freezer state, the
// container's threads and the lab app's counter, as fast as it can until
// stop is closed.
func samplePod(podDir, ctrDir string, l *labstate.Layout, stop <-chan struct{}) []podSample {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(b))
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", l.PID))
	if err != nil {
		return nil
	}
	defer mem.Close()
	var out []podSample
	var hdr [4096]byte
	for {
		select {
		case <-stop:
			return out
		default:
		}
		s := podSample{pod: read(filepath.Join(podDir, "freezer.state")), ctr: read(filepath.Join(ctrDir, "freezer.state"))}
		for _, tid := range strings.Fields(read(filepath.Join(ctrDir, "tasks"))) {
			stat := read("/proc/" + tid + "/stat")
			i := strings.LastIndexByte(stat, ')')
			if i < 0 {
				continue
			}
			f := strings.Fields(stat[i+1:])
			st := f[0]
			if ut, err := strconv.ParseUint(f[11], 10, 64); err == nil {
				s.utime += ut
			}
			if ss := strings.Fields(read("/proc/" + tid + "/schedstat")); len(ss) > 0 {
				if ns, err := strconv.ParseUint(ss[0], 10, 64); err == nil {
					s.runtimeNS += ns
				}
			}
			for _, line := range strings.Split(read("/proc/"+tid+"/status"), "\n") {
				if v, ok := strings.CutPrefix(line, "TracerPid:"); ok && strings.TrimSpace(v) != "0" {
					st += "+t"
				}
			}
			s.tasks = append(s.tasks, st)
		}
		s.pod2, s.ctr2 = read(filepath.Join(podDir, "freezer.state")), read(filepath.Join(ctrDir, "freezer.state"))
		s.at = time.Now()
		sort.Strings(s.tasks)
		if _, err := mem.ReadAt(hdr[:], int64(l.Address)); err == nil {
			s.counter, s.pending, _ = labstate.HeaderCounters(hdr[:])
		}
		out = append(out, s)
	}
}

// TestRuncCheckpointKeepsFrozenPodFrozen checkpoints a pod frozen by the
// agent's whole-pod freeze again and again with real CRIU while a sampler
// looks at the pod's and the container's freezer, the container's threads
// and the lab app's counter: no sample may find the pod runnable (neither
// cgroup frozen or freezing, a thread not held by CRIU), the counter never
// moves, and once CRIU has seized the threads it lets them go only into a
// frozen pod cgroup (not into the container's cgroup that CRIU freezes
// again without waiting, with the pod thawed until runc returns).
func TestRuncCheckpointKeepsFrozenPodFrozen(t *testing.T) {
	needRoot(t)
	criu := criuBinary(t)
	parent := "livemigrate-labnode-test-" + string(uuid.NewUUID())[:8]
	cfg := Config{SkipAuth: true, Registry: checkpointimage.PushOptions{Insecure: true}, ContainerRuntime: ContainerRuntimeRunc, CRIU: criu}
	t.Cleanup(func() { removeCgroupTree(parent) })
	r := newRuntime(t, "node-a", parent, cfg)
	ctx := context.Background()
	pod := labPod("web-0", DefaultLabAppImage, t.TempDir())
	if err := r.RunPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, r, "web-0", 50)
	pp, cp := r.find("db", "web-0", "app")
	if pp == nil || cp == nil {
		t.Fatal("pod not running")
	}
	if err := r.freezer.Freeze(ctx, pp.cgroup); err != nil {
		t.Fatal(err)
	}
	l, err := labstate.ReadLayout(cp.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	frozenAt := counter(t, r, "web-0")
	podDir := filepath.Join(r.cfg.FreezerMount, pp.cgroup)
	ctrDir := filepath.Join(r.cfg.FreezerMount, containerCgroup(pp.cgroup, cp.id))

	rounds := 10
	if v, err := strconv.Atoi(os.Getenv("LABNODE_CHECKPOINT_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	stop := make(chan struct{})
	var samples []podSample
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		samples = samplePod(podDir, ctrDir, l, stop)
	}()
	var dumps []time.Duration
	var starts []time.Time
	for i := 0; i < rounds; i++ {
		start := time.Now()
		starts = append(starts, start)
		p, err := r.Checkpoint(ctx, pp, cp)
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("checkpoint %d: %v", i+1, err)
		}
		dumps = append(dumps, time.Since(start))
		_ = os.Remove(p)
		if st, _ := r.freezer.State(pp.cgroup); st != freezer.Frozen {
			t.Errorf("checkpoint %d left the pod %s", i+1, st)
		}
	}
	close(stop)
	wg.Wait()

	// A summary of what the sampler saw, in the order first seen.
	type group struct {
		n           int
		first, last time.Time
	}
	groups := map[string]*group{}
	var order []string
	for _, s := range samples {
		g, ok := groups[s.key()]
		if !ok {
			g = &group{first: s.at}
			groups[s.key()] = g
			order = append(order, s.key())
		}
		g.n++
		g.last = s.at
	}
	for _, k := range order {
		t.Logf("%6d samples: %s", groups[k].n, k)
	}
	t.Logf("%d checkpoints (%v), %d samples", rounds, dumps, len(samples))

	// What went wrong, by kind: how often and the first few samples.
	kinds := []string{"CRIU let a thread go while the pod was not frozen", "the pod was runnable", "the counter moved"}
	found := map[string][]string{}
	count := map[string]int{}
	note := func(kind string, i int, s podSample, detail string) {
		count[kind]++
		if len(found[kind]) < 5 {
			found[kind] = append(found[kind], fmt.Sprintf("sample %d at %s: %s%s", i, s.at.Format(time.RFC3339Nano), s.key(), detail))
		}
	}
	// CRIU seizes the threads once per checkpoint: a sample finding them
	// all traced starts the part of the round in which CRIU may let them
	// go only into a frozen pod; a look at a frozen pod ends it.
	seized := false
	round := 0
	for i, s := range samples {
		for round < len(starts) && !s.at.Before(starts[round]) {
			seized = false
			round++
		}
		if s.allTraced() {
			seized = true
		}
		if s.pod == "FROZEN" || s.pod2 == "FROZEN" {
			seized = false
		}
		if seized && s.untraced() {
			note(kinds[0], i, s, "")
		}
		if s.runnable() {
			note(kinds[1], i, s, "")
		}
		if s.counter != frozenAt {
			note(kinds[2], i, s, fmt.Sprintf(": counter %d (tick in flight %d), frozen at %d", s.counter, s.pending, frozenAt))
		}
	}
	for _, k := range kinds {
		if count[k] > 0 {
			t.Errorf("%s in %d samples:\n%s", k, count[k], strings.Join(found[k], "\n"))
		}
	}
	if c := counter(t, r, "web-0"); c != frozenAt {
		t.Errorf("app advanced during the checkpoints: %d -> %d", frozenAt, c)
	}
}
