// Command checkpoint measures checkpoint-to-pushed-image time and throughput
// for a lab app holding 64 MiB, 256 MiB and 1 GiB of memory, against a raw
// push of the same bytes to the same registry in the same run.
//
// The checkpoint path is the agent's: the pod is frozen with the agent's
// freezer, the lab node runtime dumps the frozen process through the kubelet
// checkpoint API into a CRI-O layout archive, the agent inspects it and pushes
// it as a checkpoint image. The raw path pushes the finished archive file as
// one blob with the same registry client. Both run against one in-process
// registry; the blob is deleted between runs so that neither is skipped.
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
	// ratio is the median of the runs' raw/checkpoint ratios: each run's two
	// paths run back to back, so a load spike on a shared machine moves both.
	ratio float64
}

func main() {
	labapp := flag.String("labapp", "bin/labapp", "The labapp binary.")
	runs := flag.Int("runs", 3, "Runs per size; the median is reported.")
	sizes := flag.String("sizes", "64Mi,256Mi,1Gi", "App memory sizes.")
	flag.Parse()
	if err := run(*labapp, *runs, *sizes); err != nil {
		fmt.Fprintln(os.Stderr, "bench-checkpoint:", err)
		os.Exit(1)
	}
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

func run(labapp string, runs int, sizeList string) error {
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
	reg, err := labnode.StartRegistry("", "")
	if err != nil {
		return err
	}
	defer reg.Close()
	parent := "livemigrate-bench-" + string(uuid.NewUUID())[:8]
	rt, err := labnode.New(labnode.Config{
		NodeName: "bench-node", Root: filepath.Join(root, "node"), LabApp: labapp,
		FreezerMount: "/sys/fs/cgroup/freezer", CgroupParent: parent + "/bench-node", SkipAuth: true,
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
		for _, d := range []string{parent + "/bench-node/kubepods/burstable", parent + "/bench-node/kubepods", parent + "/bench-node", parent} {
			_ = os.Remove(filepath.Join("/sys/fs/cgroup/freezer", d))
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
		var ck, rw, dumps []time.Duration
		var ratios []float64
		var archiveBytes int64
		// Run -1 warms up both paths (heap, page cache) and is not counted.
		for i := -1; i < runs; i++ {
			// Checkpoint path: kubelet API dump, inspect, build, push. The
			// registry runs in this process: collect the previous run's
			// garbage first so that neither path pays for the other.
			settle()
			start := time.Now()
			items, err := kc.Checkpoint(ctx, host, port, "bench", podName, "app", 10*time.Minute)
			if err != nil {
				return err
			}
			dumped := time.Since(start)
			p, err := archive.Resolve(rt.CheckpointDir(), items[0])
			if err != nil {
				return err
			}
			if err := archive.Secure(p); err != nil {
				return err
			}
			inspectStart := time.Now()
			info, err := archive.Inspect(p, archive.DefaultLimits)
			inspected := time.Since(inspectStart)
			if err != nil {
				return err
			}
			ref := checkpointimage.Repository(reg.Host+"/bench", "bench", podName, "app") + ":run" + strconv.Itoa(i)
			res, err := checkpointimage.PushArchive(ctx, p, info.ContainerName, info.Annotations, ref, push)
			if err != nil {
				return err
			}
			ckTime := time.Since(start)
			fmt.Fprintf(os.Stderr, "size=%s run=%d dump=%v inspect=%v push=%v total=%v\n", sz.label, i, dumped, inspected, res.Duration, ckTime)
			archiveBytes = res.Bytes
			layerDigest, err := checkpointimage.LayerFromArchive(p).Digest()
			if err != nil {
				return err
			}
			if err := deleteBlob(reg.Host, "bench/bench-"+podName+"-app", layerDigest.String()); err != nil {
				return err
			}
			// Raw path: the same bytes as one blob, to the same registry,
			// with the same single-pass upload the checkpoint path uses.
			settle()
			start = time.Now()
			if _, _, err := checkpointimage.UploadBlob(ctx, reg.Host+"/bench/raw-"+podName, p, push); err != nil {
				return err
			}
			rawTime := time.Since(start)
			fmt.Fprintf(os.Stderr, "size=%s run=%d raw=%v ratio=%.2f\n", sz.label, i, rawTime, rawTime.Seconds()/ckTime.Seconds())
			if i >= 0 {
				ratios = append(ratios, rawTime.Seconds()/ckTime.Seconds())
				rw = append(rw, rawTime)
				ck = append(ck, ckTime)
				dumps = append(dumps, dumped)
			}
			if err := deleteBlob(reg.Host, "bench/raw-"+podName, layerDigest.String()); err != nil {
				return err
			}
			if err := archive.Remove(rt.CheckpointDir(), p); err != nil {
				return err
			}
		}
		rt.StopPod(pod.UID)
		results = append(results, result{size: sz, archive: archiveBytes, ckpt: median(ck), raw: median(rw), dump: median(dumps), ratio: medianF(ratios)})
	}
	return report(os.Stdout, results, runs)
}

func settle() {
	runtime.GC()
	runtime.GC()
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

func report(out *os.File, rs []result, runs int) error {
	fmt.Fprintf(out, "checkpoint-to-pushed-image vs raw push of the same bytes (medians of %d runs; ratio = median of per-run raw/checkpoint)\n\n", runs)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "app memory\tarchive MiB\tdump s\tcheckpoint s\tcheckpoint MiB/s\traw s\traw MiB/s\tafter-dump ratio\tratio\t")
	worst := 0.0
	for i, r := range rs {
		ratio := r.ratio
		if i == 0 || ratio < worst {
			worst = ratio
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.3f\t%.3f\t%.0f\t%.3f\t%.0f\t%.2f\t%.2f\t\n", r.size.label, float64(r.archive)/(1<<20),
			r.dump.Seconds(), r.ckpt.Seconds(), mibps(r.archive, r.ckpt), r.raw.Seconds(), mibps(r.archive, r.raw),
			r.raw.Seconds()/(r.ckpt-r.dump).Seconds(), ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nratio checkpoint/raw: %.2f\n", worst)
	return nil
}
