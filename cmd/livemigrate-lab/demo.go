package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/client-go/kubernetes"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// demo runs the live-migration scenario of the end-to-end test against a
// lab started by up: the lab app as a StatefulSet with a local volume,
// placed by the scheduler, written to continuously, moved with kubectl
// livemigrate move --wait, then the timeline and the checks.
func demo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "directory of the lab (started by livemigrate-lab up)")
	ns := fs.String("namespace", "demo", "namespace of the demo's workload")
	name := fs.String("name", "labapp", "name of the demo's StatefulSet")
	to := fs.String("to", "", "target cluster; empty lets the descheduler pick the best-scored one")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound of the whole demo")
	_ = fs.Parse(args)
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root: the lab's node runtime freezes real cgroups and reads process memory")
	}
	s, err := readState(*dir)
	if err != nil {
		return fmt.Errorf("no lab in %s (run livemigrate-lab up first): %w", *dir, err)
	}
	if !s.Ready || !alive(s.SupervisorPID) {
		return fmt.Errorf("the lab in %s is not up", *dir)
	}
	root, err := lab.RepoRoot()
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	step := func(format string, a ...any) { fmt.Printf("\n==> "+format+"\n", a...) }
	env, err := scenario.FromKubeconfigs(filepath.Join(s.Dir, "lab"), s.Kubeconfigs, filepath.Join(root, "bin"), os.Stdout,
		func(format string, a ...any) { fmt.Printf("    "+format+"\n", a...) })
	if err != nil {
		return err
	}
	begin := time.Now()
	// The invariant monitor watches every lab app process of the members
	// from the host for the whole demo: never two live copies, nothing
	// lost.
	var clients []kubernetes.Interface
	for _, n := range env.MemberNames() {
		clients = append(clients, env.Members[n].Client)
	}
	mon := lab.NewInvariantMonitor(clients)
	monCtx, stopMonitor := context.WithCancel(ctx)
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.Run(monCtx) }()
	defer func() { stopMonitor(); <-monDone }()

	step("Deploying the lab app as StatefulSet %s/%s with a local volume; the livemigrate scheduler places it", *ns, *name)
	app, err := env.Deploy(ctx, *ns, *name, scenario.AppOptions{})
	if err != nil {
		return err
	}
	p, err := app.WaitRunning(ctx, app.Source, 500)
	if err != nil {
		return err
	}
	c, _ := p.Counter()
	fmt.Printf("    running in %s on %s (pid %d), counter %d, logging every value to %s\n", app.Source, p.Node, p.Layout.PID, c, p.LogPath())

	step("Where would it go? kubectl livemigrate plan statefulset/%s", *name)
	plan := exec.CommandContext(ctx, filepath.Join(env.BinDir, "kubectl-livemigrate"), "--kubeconfig="+env.Karmada.Kubeconfig, "-n", *ns, "plan", "statefulset/"+*name)
	plan.Stdout, plan.Stderr = os.Stdout, os.Stdout
	if err := plan.Run(); err != nil {
		return fmt.Errorf("kubectl livemigrate plan: %w", err)
	}

	step("Live-migrating it while it writes")
	obs, err := app.Move(ctx, scenario.MoveOptions{To: *to, Name: *name + "-move"})
	if err != nil {
		return err
	}
	if obs.Migration != nil {
		step("Timeline (from the LiveMigration's status)")
		fmt.Print(scenario.Timeline(obs.Migration))
	}

	step("Checking that nothing was lost and there never were two running copies")
	res, errs := env.CheckSucceeded(ctx, app, obs)
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Printf("    FAIL: %v\n", e)
		}
		return fmt.Errorf("%d checks failed", len(errs))
	}
	stopMonitor()
	<-monDone
	violations, samples := mon.Violations()
	for _, v := range violations {
		fmt.Printf("    FAIL: invariant monitor: %s\n", v)
	}
	if len(violations) > 0 {
		return fmt.Errorf("the invariant monitor saw %d violations", len(violations))
	}
	fmt.Printf("    invariant monitor: %d looks at every lab app process on the host, never two live copies, nothing lost\n", samples)
	fmt.Printf("    the source was frozen at counter %d and never ran again; the target resumed from it in %s\n", res.RestoredFrom, obs.Migration.Status.TargetCluster)
	fmt.Printf("    labapp verify on the target: %s\n", res.Verified)
	for _, line := range checkpointOrigins(ctx, obs.Migration) {
		fmt.Printf("    %s\n", line)
	}
	fmt.Printf("\nDemo done in %s.\n", time.Since(begin).Round(time.Second))
	return nil
}

// checkpointOrigins says, per checkpoint image of the migration, what took
// the checkpoint: the org.criu.checkpoint.* annotations the agent copied
// from the archive (CRIU's version, kernel and architecture from CRIU's
// dump.log, the OCI runtime from the archive's config.dump).
func checkpointOrigins(ctx context.Context, lm *lmv1alpha1.LiveMigration) []string {
	if lm == nil {
		return nil
	}
	var out []string
	for _, p := range lm.Status.Pods {
		for _, ci := range p.CheckpointImages {
			out = append(out, checkpointOrigin(ctx, p.Name, ci))
		}
	}
	return out
}

func checkpointOrigin(ctx context.Context, pod string, ci lmv1alpha1.ContainerCheckpointImage) string {
	what := fmt.Sprintf("checkpoint of %s/%s", pod, ci.Container)
	ref, err := name.ParseReference(ci.Image, name.Insecure)
	if err != nil {
		return fmt.Sprintf("%s: image reference %q: %v", what, ci.Image, err)
	}
	idx, err := remote.Index(ref, remote.WithContext(ctx))
	if err != nil {
		return fmt.Sprintf("%s: reading %s: %v", what, ci.Image, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return fmt.Sprintf("%s: reading %s: %v", what, ci.Image, err)
	}
	a := m.Annotations
	v := a[metadata.CheckpointAnnotationCriuVersion]
	if v == "" {
		return fmt.Sprintf("%s: not taken by CRIU (its image names no CRIU version: the memory stand-in)", what)
	}
	var via []string
	if rt := strings.TrimSpace(a[metadata.CheckpointAnnotationRuntimeName] + " " + a[metadata.CheckpointAnnotationRuntimeVersion]); rt != "" {
		via = append(via, rt)
	}
	if k := a[metadata.CheckpointAnnotationHostKernel]; k != "" {
		via = append(via, "kernel "+k)
	}
	if arch := a[metadata.CheckpointAnnotationHostArch]; arch != "" {
		via = append(via, arch)
	}
	return fmt.Sprintf("%s taken by CRIU %s (%s), per its image's org.criu.checkpoint.* annotations", what, v, strings.Join(via, ", "))
}
