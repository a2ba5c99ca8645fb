// Command checkpoint measures checkpoint-to-pushed-image time and throughput
// for a lab app holding 64 MiB, 256 MiB and 1 GiB of memory, against a raw
// push of the same bytes to the same registry in the same run.
//
// The checkpoint path is the agent's: the pod is frozen with the agent's
// freezer, the lab node runtime dumps the frozen process through the kubelet
// checkpoint API into a CRI-O layout archive, the agent inspects it and pushes
// it as a checkpoint image. The raw path pushes the finished archive file as
// one blob with the same registry client. Both push to one registry; the
// blob is deleted between runs so that neither is skipped.
//
// Method (flags; --old-method is the one used before 2026-11-25): the
// registry runs in its own process (--registry=process), as a real one does,
// so its allocations, page faults and garbage collection are not charged to
// the benchmark process that runs the agent's code; the order of the two
// paths alternates per run (--order=alternate: odd runs push the previous
// run's archive raw first), so neither path always meets the registry's heap
// grown or shrunk by the other; both processes collect garbage before each
// timed section, and before the raw upload the registry idles (untimed) as
// long as the last dump took (--raw-idle), because it idles that long during
// the checkpoint path before its upload and the Go runtime returns freed
// heap to the OS meanwhile, which the next upload faults in again. Per timed
// section it logs page faults, CPU time and garbage collections of both
// processes and the dirty page cache.
//
// It prints a table and, as its last line, "ratio checkpoint/raw: R", the
// worst ratio of the three sizes (raw time / checkpoint time: 1 means the
// checkpoint path is as fast as the raw push). The "after-dump ratio" column
// leaves out the runtime's dump, to show the agent's own overhead (inspect,
// image build, push). Needs root (cgroups, reading
// another process's memory).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/agent/kubelet"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
	"github.com/livemigrate/livemigrate/test/labnode"
)

type size struct {
	label string
	bytes int64
}

type result struct {
	size      size
	archive   int64
	ckpt, raw time.Duration
	dump      time.Duration
	// criuFrozen is CRIU's own frozen time of the dump (stats-dump); zero
	// with the memory stand-in.
	criuFrozen time.Duration
	// ratio is the median of the runs' raw/checkpoint ratios: each run's two
	// paths run back to back, so a load spike on a shared machine moves both.
	ratio float64
}

// method is how the two paths are measured.
type method struct {
	// containerRuntime is the node runtime's ("runc" or "process"), criu
	// its criu binary.
	containerRuntime, criu string
	// registry "process": the registry runs in its own process, as a real
	// one does; "inproc": in the benchmark's process.
	registry string
	// order "alternate": odd runs push the previous run's archive raw before
	// the checkpoint path; "checkpoint-first": every run does the checkpoint
	// path first.
	order string
	// registryGOGC is the registry process's GOGC: "off" collects its
	// garbage only between timed sections (settle), so that the Go
	// scavenger does not return part of its heap to the OS while it idles
	// during the checkpoint path's dump; "" leaves the default.
	registryGOGC string
	// rawIdle lets the registry idle before the raw upload as long as it
	// idles during the checkpoint path's dump (the last dump's duration),
	// so that both uploads start the same time after the registry's
	// garbage collection.
	rawIdle bool
	// warmup is the number of uncounted runs before the counted ones.
	warmup int
	// freeOS returns the freed heap of both processes to the kernel before
	// each timed section (debug.FreeOSMemory) instead of only collecting it.
	freeOS bool
}

const (
	orderAlternate       = "alternate"
	orderCheckpointFirst = "checkpoint-first"
)

func (m method) String() string {
	settle := "GC"
	if m.freeOS {
		settle = "GC and heap returned to the OS"
	}
	reg := m.registry
	if m.registry == "process" && m.registryGOGC != "" {
		reg += " (GOGC=" + m.registryGOGC + ")"
	}
	idle := ""
	if m.rawIdle {
		idle = "; registry idles as long as the dump before the raw upload"
	}
	rt := "node runtime " + m.containerRuntime
	if m.containerRuntime == labnode.ContainerRuntimeRunc {
		if v, err := labnode.ReadCRIUVersion(m.criu); err == nil {
			rt += " (CRIU " + v + ")"
		}
	}
	return fmt.Sprintf("%s, registry %s, order %s, %d warm-up runs, before each timed section: %s%s", rt, reg, m.order, m.warmup, settle, idle)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveRegistryArg {
		if err := serveRegistry(); err != nil {
			fmt.Fprintln(os.Stderr, "bench-checkpoint registry:", err)
			os.Exit(1)
		}
		return
	}
	labapp := flag.String("labapp", "bin/labapp", "The labapp binary.")
	runs := flag.Int("runs", 3, "Runs per size; the median is reported.")
	sizes := flag.String("sizes", "64Mi,256Mi,1Gi", "App memory sizes.")
	var m method
	flag.StringVar(&m.registry, "registry", "process", `Where the registry runs: "process" (its own process) or "inproc" (this process).`)
	flag.StringVar(&m.order, "order", orderAlternate, `Order of the two paths: "alternate" (odd runs raw first) or "checkpoint-first".`)
	flag.StringVar(&m.registryGOGC, "registry-gogc", "", `GOGC of the registry process ("" = Go's default).`)
	flag.IntVar(&m.warmup, "warmup", 3, "Uncounted runs per size before the counted ones.")
	flag.BoolVar(&m.rawIdle, "raw-idle", true, "Before the raw upload, let the registry idle as long as the last dump took (untimed).")
	flag.BoolVar(&m.freeOS, "free-os-memory", false, "Return freed heap to the OS in both processes before each timed section (else only collect garbage).")
	flag.StringVar(&profileDir, "cpuprofile-dir", "", "Write a CPU profile of each timed upload to this directory.")
	containerRuntime := flag.String("container-runtime", labnode.ContainerRuntimeRunc, `The node runtime: "runc" (runc checkpoint, CRIU) or "process" (the memory stand-in).`)
	criu := flag.String("criu", "", "The criu binary (--container-runtime=runc); CRIU needs CRIU_FAULT=130 in these VMs.")
	old := flag.Bool("old-method", false, "The method before 2026-11-25: --registry=inproc --order=checkpoint-first --raw-idle=false --free-os-memory=false --warmup=1.")
	flag.Parse()
	if *old {
		m = method{registry: "inproc", order: orderCheckpointFirst, warmup: 1}
	}
	if err := m.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-checkpoint:", err)
		os.Exit(2)
	}
	m.containerRuntime, m.criu = *containerRuntime, *criu
	if err := run(*labapp, *runs, *sizes, m); err != nil {
		fmt.Fprintln(os.Stderr, "bench-checkpoint:", err)
		os.Exit(1)
	}
}

func (m method) validate() error {
	if m.registry != "process" && m.registry != "inproc" {
		return fmt.Errorf("--registry=%q: want process or inproc", m.registry)
	}
	if m.warmup < 0 {
		return fmt.Errorf("--warmup=%d: want 0 or more", m.warmup)
	}
	if m.order != orderAlternate && m.order != orderCheckpointFirst {
		return fmt.Errorf("--order=%q: want %s or %s", m.order, orderAlternate, orderCheckpointFirst)
	}
	return nil
}

func parseSize(s string) (size, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "Gi"):
		mult = 1 << 30
	case strings.HasSuffix(s, "Mi"):
		mult = 1 << 20
	}
	n, err := strconv.ParseInt(strings.TrimRight(s, "GMi"), 10, 64)
	return size{s, n * mult}, err
}

func run(labapp string, runs int, sizeList string, m method) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (cgroup freezer, reading the lab app's memory)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root, err := os.MkdirTemp("", "bench-checkpoint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	reg, err := startRegistry(m.registry, m.registryGOGC)
	if err != nil {
		return err
	}
	defer reg.close()
	parent := "livemigrate-bench-" + string(uuid.NewUUID())[:8]
	rt, err := labnode.New(labnode.Config{
		NodeName: "bench-node", Root: filepath.Join(root, "node"), LabApp: labapp,
		FreezerMount: "/sys/fs/cgroup/freezer", CgroupParent: parent + "/bench-node", SkipAuth: true,
		ContainerRuntime: m.containerRuntime, CRIU: m.criu,
	})
	if err != nil {
		return err
	}
	if err := rt.Start(ctx); err != nil {
		return err
	}
	// Interrupted: stop (and thaw) the lab app before exiting, or a frozen
	// process would outlive the benchmark.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		rt.StopAll()
		os.Exit(130)
	}()
	defer func() {
		rt.StopAll()
		// runc makes the cgroups in every v1 hierarchy.
		hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
		for _, h := range hierarchies {
			for _, d := range []string{parent + "/bench-node/kubepods/burstable", parent + "/bench-node/kubepods", parent + "/bench-node", parent} {
				_ = os.Remove(filepath.Join("/sys/fs/cgroup", h.Name(), d))
			}
		}
	}()
	kc, err := kubelet.New(kubelet.Config{CAFile: rt.CAFile})
	if err != nil {
		return err
	}
	host, portS, _ := net.SplitHostPort(rt.Addr)
	port, _ := strconv.Atoi(portS)
	fr := &freezer.Freezer{Version: freezer.V1, Mount: "/sys/fs/cgroup/freezer", Parent: parent + "/bench-node"}
	push := checkpointimage.PushOptions{Insecure: true}

	var results []result
	for _, s := range strings.Split(sizeList, ",") {
		sz, err := parseSize(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		podName := "bench-" + strings.ToLower(sz.label)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: "bench", UID: uuid.NewUUID()},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: labnode.DefaultLabAppImage,
					Args:         []string{"run", "--memory=" + sz.label, "--dirty-rate=16Mi", "--tick=10ms", "--log=/data/counter.log"},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			},
		}
		if err := rt.RunPod(ctx, pod); err != nil {
			return err
		}
		ci, _ := rt.Container("bench", podName, "app")
		l, err := labstate.ReadLayout(ci.StateDir)
		if err != nil {
			return err
		}
		for i := 0; i < 200; i++ {
			if c, _ := labstate.PeekCounter(l); c >= 20 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cg, err := fr.PodPath(pod.UID)
		if err != nil {
			return err
		}
		if err := fr.Freeze(ctx, cg); err != nil {
			return err
		}
		b := &bench{ctx: ctx, m: m, kc: kc, host: host, port: port, rt: rt, reg: reg, push: push, size: sz, pod: podName}
		var ck, rw, dumps, frozen []time.Duration
		var ratios []float64
		var archiveBytes int64
		// prev is the previous run's archive, kept for a raw-first run. It
		// is deleted right after its raw push, before the dump: every dump
		// runs with no other archive on disk (and none in the dirty page
		// cache), as in checkpoint-first order.
		prev := ""
		// Runs below 0 warm up both paths (heaps, page cache, connections)
		// and are not counted.
		for i := -m.warmup; i < runs; i++ {
			rawFirst := m.order == orderAlternate && i%2 != 0 && prev != ""
			var rawTime time.Duration
			if rawFirst {
				if rawTime, err = b.raw(i, prev); err != nil {
					return err
				}
			}
			if prev != "" {
				if err := os.Remove(prev); err != nil {
					return err
				}
				prev = ""
			}
			cp, err := b.checkpoint(i)
			if err != nil {
				return err
			}
			archiveBytes = cp.bytes
			if !rawFirst {
				if rawTime, err = b.raw(i, cp.path); err != nil {
					return err
				}
			}
			first := "checkpoint"
			if rawFirst {
				first = "raw"
			}
			fmt.Fprintf(os.Stderr, "size=%s run=%d first=%s checkpoint=%v raw=%v ratio=%.2f\n", sz.label, i, first, cp.total, rawTime, rawTime.Seconds()/cp.total.Seconds())
			if i >= 0 {
				ratios = append(ratios, rawTime.Seconds()/cp.total.Seconds())
				rw = append(rw, rawTime)
				ck = append(ck, cp.total)
				dumps = append(dumps, cp.dump)
				frozen = append(frozen, cp.criuFrozen)
			}
			if m.order == orderAlternate && (i+1)%2 != 0 && i+1 < runs {
				// The next run pushes this archive raw first. Keep it out of
				// the checkpoint directory: the next dump may get the same
				// name (the kubelet's names have one-second resolution).
				prev = filepath.Join(root, fmt.Sprintf("run%d.tar", i))
				if err := os.Rename(cp.path, prev); err != nil {
					return err
				}
				continue
			}
			if err := os.Remove(cp.path); err != nil {
				return err
			}
		}
		rt.StopPod(pod.UID)
		results = append(results, result{size: sz, archive: archiveBytes, ckpt: median(ck), raw: median(rw), dump: median(dumps), criuFrozen: median(frozen), ratio: medianF(ratios)})
	}
	return report(os.Stdout, results, runs, m)
}

// bench runs the two timed paths for one size.
type bench struct {
	ctx  context.Context
	m    method
	kc   *kubelet.Client
	host string
	port int
	rt   *labnode.Runtime
	reg  *registryProc
	push checkpointimage.PushOptions
	size size
	pod  string
	// lastDump is the last checkpoint path's dump time.
	lastDump time.Duration
}

type checkpointRun struct {
	path        string
	bytes       int64
	dump, total time.Duration
	criuFrozen  time.Duration
}

// checkpoint is the checkpoint path: kubelet API dump, secure, inspect,
// build, push. The clock starts before the kubelet call and stops when the
// index is tagged.
func (b *bench) checkpoint(run int) (*checkpointRun, error) {
	if err := b.settle(); err != nil {
		return nil, err
	}
	before := sample(b.reg)
	start := time.Now()
	items, err := b.kc.Checkpoint(b.ctx, b.host, b.port, "bench", b.pod, "app", 10*time.Minute)
	if err != nil {
		return nil, err
	}
	dumped := time.Since(start)
	b.lastDump = dumped
	afterDump := sample(b.reg)
	p, err := archive.Resolve(b.rt.CheckpointDir(), items[0])
	if err != nil {
		return nil, err
	}
	if err := archive.Secure(p); err != nil {
		return nil, err
	}
	inspectStart := time.Now()
	info, err := archive.Inspect(p, archive.DefaultLimits)
	inspected := time.Since(inspectStart)
	if err != nil {
		return nil, err
	}
	ref := checkpointimage.Repository(b.reg.host+"/bench", "bench", b.pod, "app") + ":run" + strconv.Itoa(run)
	stop := profile("ckpt", run)
	res, err := checkpointimage.PushArchive(b.ctx, p, info.ContainerName, info.Annotations, ref, b.push)
	stop()
	if err != nil {
		return nil, err
	}
	total := time.Since(start)
	after := sample(b.reg)
	fmt.Fprintf(os.Stderr, "size=%s run=%d checkpoint dump=%v inspect=%v push=%v total=%v dump[%s] push[%s]\n",
		b.size.label, run, dumped, inspected, res.Duration, total, afterDump.sub(before), after.sub(afterDump))
	digest, err := checkpointimage.LayerFromArchive(p).Digest()
	if err != nil {
		return nil, err
	}
	if err := deleteBlob(b.reg.host, "bench/bench-"+b.pod+"-app", digest.String()); err != nil {
		return nil, err
	}
	return &checkpointRun{path: p, bytes: res.Bytes, dump: dumped, total: total, criuFrozen: info.FrozenTime}, nil
}

// raw is the raw path: the archive at p as one blob, to the same registry,
// with the same single-pass upload the checkpoint path uses.
func (b *bench) raw(run int, p string) (time.Duration, error) {
	if err := b.settle(); err != nil {
		return 0, err
	}
	if b.m.rawIdle {
		time.Sleep(b.lastDump)
	}
	before := sample(b.reg)
	start := time.Now()
	stop := profile("raw", run)
	digest, _, err := checkpointimage.UploadBlob(b.ctx, b.reg.host+"/bench/raw-"+b.pod, p, b.push)
	stop()
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	fmt.Fprintf(os.Stderr, "size=%s run=%d raw=%v [%s]\n", b.size.label, run, d, sample(b.reg).sub(before))
	return d, deleteBlob(b.reg.host, "bench/raw-"+b.pod, digest.String())
}

// settle puts both processes in the same state before a timed section:
// garbage collected and, with --free-os-memory, the freed heap returned to
// the kernel, so that neither path reuses pages the other faulted in.
func (b *bench) settle() error {
	if b.m.freeOS {
		debug.FreeOSMemory()
	} else {
		runtime.GC()
		runtime.GC()
	}
	return b.reg.settle(b.m.freeOS)
}

func deleteBlob(host, repo, digest string) error {
	req, err := http.NewRequest(http.MethodDelete, "http://"+host+"/v2/"+repo+"/blobs/"+digest, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("delete blob %s: HTTP %d", digest, resp.StatusCode)
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func medianF(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func mibps(b int64, d time.Duration) float64 { return float64(b) / (1 << 20) / d.Seconds() }

func report(out *os.File, rs []result, runs int, m method) error {
	fmt.Fprintf(out, "checkpoint-to-pushed-image vs raw push of the same bytes (medians of %d runs; ratio = median of per-run raw/checkpoint)\n", runs)
	fmt.Fprintf(out, "method: %s\n\n", m)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "app memory\tarchive MiB\tdump s\tCRIU frozen s\tcheckpoint s\tcheckpoint MiB/s\traw s\traw MiB/s\tafter-dump ratio\tratio\t")
	worst := 0.0
	for i, r := range rs {
		ratio := r.ratio
		if i == 0 || ratio < worst {
			worst = ratio
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.3f\t%.3f\t%.3f\t%.0f\t%.3f\t%.0f\t%.2f\t%.2f\t\n", r.size.label, float64(r.archive)/(1<<20),
			r.dump.Seconds(), r.criuFrozen.Seconds(), r.ckpt.Seconds(), mibps(r.archive, r.ckpt), r.raw.Seconds(), mibps(r.archive, r.raw),
			r.raw.Seconds()/(r.ckpt-r.dump).Seconds(), ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nratio checkpoint/raw: %.2f\n", worst)
	return nil
}

// profileDir, when set, gets a CPU profile of each timed upload
// (ckpt-<run>.pprof: PushArchive; raw-<run>.pprof: UploadBlob).
var profileDir string

func profile(name string, run int) func() {
	if profileDir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(profileDir, fmt.Sprintf("%s-%d.pprof", name, run)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		_ = f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }
}
