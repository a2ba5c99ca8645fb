// Command livemigrate-lab runs the lab (a Karmada control plane and member
// clusters as local processes, see test/lab) outside of tests:
//
//	livemigrate-lab up       # start it in the background, print how to reach it
//	livemigrate-lab status   # report the supervisor, components and clusters
//	livemigrate-lab down     # stop everything and remove the lab's directory
//	livemigrate-lab config   # print the default configuration (YAML)
//	livemigrate-lab demo     # live-migrate the lab app in the running lab (hack/demo.sh)
//
// up forks a supervisor process that owns every component and keeps
// running after up returns; it records its PID and the lab's kubeconfigs in
// <dir>/state.json, which status and down read.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"

	"github.com/livemigrate/livemigrate/test/lab"
)

// state is what the supervisor records in <dir>/state.json.
type state struct {
	SupervisorPID   int               `json:"supervisorPID"`
	Ready           bool              `json:"ready"`
	Error           string            `json:"error,omitempty"`
	Dir             string            `json:"dir"`
	EnvFile         string            `json:"envFile,omitempty"`
	Kubeconfigs     map[string]string `json:"kubeconfigs,omitempty"`
	Components      map[string]int    `json:"components,omitempty"`
	StartupDuration string            `json:"startupDuration,omitempty"`
}

func usage() {
	fmt.Fprintf(os.Stderr, `Usage: livemigrate-lab <command> [flags]

Commands:
  up       start the lab in the background (default configuration: the demo's
           Karmada plane and three members) and print how to reach it
  down     stop the lab and remove its directory
  status   show the supervisor, the components and the member clusters
  config   print the default configuration as YAML (edit it, pass it to up --config)
  demo     live-migrate the lab app between members of a running lab and check it

Run "livemigrate-lab <command> -h" for the command's flags.
`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	case "status":
		err = status(os.Args[2:])
	case "config":
		err = printConfig()
	case "supervise":
		err = supervise(os.Args[2:])
	case "demo":
		err = demo(os.Args[2:])
	case "-h", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "livemigrate-lab %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func defaultDir() string {
	if root, err := lab.RepoRoot(); err == nil {
		return filepath.Join(root, ".lab")
	}
	return filepath.Join(os.TempDir(), "livemigrate-lab")
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

func readState(dir string) (*state, error) {
	raw, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", statePath(dir), err)
	}
	return &s, nil
}

func writeState(dir string, s *state) error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(dir))
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie is not alive.
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	return len(fields) == 0 || fields[0] != "Z"
}

func loadOptions(path string) (lab.Options, error) {
	if path == "" {
		return lab.DefaultOptions(), nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return lab.Options{}, err
	}
	var o lab.Options
	if err := yaml.UnmarshalStrict(raw, &o); err != nil {
		return lab.Options{}, fmt.Errorf("parsing %s: %w", path, err)
	}
	return o, nil
}

func printConfig() error {
	raw, err := yaml.Marshal(lab.DefaultOptions())
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(raw)
	return err
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "directory for the lab's state, kubeconfigs and logs")
	config := fs.String("config", "", "lab configuration file (YAML, see livemigrate-lab config); empty means the default")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the lab to be up")
	_ = fs.Parse(args)
	if _, err := loadOptions(*config); err != nil {
		return err
	}
	if s, err := readState(*dir); err == nil && alive(s.SupervisorPID) {
		return fmt.Errorf("a lab is already running in %s (supervisor PID %d); run livemigrate-lab down first", *dir, s.SupervisorPID)
	}
	if err := os.RemoveAll(*dir); err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(*dir, "supervisor.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	absConfig := *config
	if absConfig != "" {
		if absConfig, err = filepath.Abs(absConfig); err != nil {
			return err
		}
	}
	cmd := exec.Command(self, "supervise", "--dir", *dir, "--config", absConfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own session: the supervisor outlives this command and its terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the supervisor: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Printf("Starting the lab in %s (supervisor PID %d, log %s)...\n", *dir, pid, logPath)
	deadline := time.After(*timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case werr := <-exited:
			return fmt.Errorf("the supervisor exited (%v) before the lab was up; its log:\n%s", werr, tail(logPath, 40))
		case <-deadline:
			_ = syscall.Kill(pid, syscall.SIGTERM)
			return fmt.Errorf("the lab was not up after %v; see %s", *timeout, logPath)
		case <-tick.C:
		}
		s, err := readState(*dir)
		if err != nil {
			continue
		}
		if s.Error != "" {
			return fmt.Errorf("the lab failed to start: %s\nsupervisor log: %s", s.Error, logPath)
		}
		if s.Ready {
			printReach(s)
			return nil
		}
	}
}

func printReach(s *state) {
	fmt.Printf("The lab is up (in %s).\n\n", s.StartupDuration)
	names := make([]string, 0, len(s.Kubeconfigs))
	for n := range s.Kubeconfigs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("  %-10s kubectl --kubeconfig %s ...\n", n, s.Kubeconfigs[n])
	}
	fmt.Printf("\nOr: source %s && kubectl get clusters\n", s.EnvFile)
	fmt.Printf("Logs: %s   Stop: livemigrate-lab down --dir %s\n", filepath.Join(s.Dir, "lab", "logs"), s.Dir)
}

func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// supervise runs the lab in the foreground until SIGTERM or SIGINT.
func supervise(args []string) error {
	fs := flag.NewFlagSet("supervise", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "directory for the lab")
	config := fs.String("config", "", "lab configuration file")
	_ = fs.Parse(args)
	opts, err := loadOptions(*config)
	if err != nil {
		return err
	}
	opts.Dir = filepath.Join(*dir, "lab")
	opts.KeepDir = true
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	logger := klog.Background()
	ctx = klog.NewContext(ctx, logger)
	st := &state{SupervisorPID: os.Getpid(), Dir: *dir}
	if err := writeState(*dir, st); err != nil {
		return err
	}
	l, err := lab.Start(ctx, opts)
	if err != nil {
		st.Error = err.Error()
		_ = writeState(*dir, st)
		return err
	}
	defer l.Stop()
	env, err := l.WriteEnvFile()
	if err != nil {
		return err
	}
	st.Ready = true
	st.EnvFile = env
	st.Kubeconfigs = l.Kubeconfigs()
	st.Components = l.PIDs()
	st.StartupDuration = l.StartupDuration.Round(time.Millisecond).String()
	if err := writeState(*dir, st); err != nil {
		return err
	}
	for {
		werr := l.Wait(ctx)
		if ctx.Err() != nil {
			logger.Info("Stopping the lab")
			return nil
		}
		// A component exited: keep the rest running, record it for status.
		logger.Error(werr, "A lab component exited")
		st.Components = l.PIDs()
		_ = writeState(*dir, st)
	}
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "directory of the lab")
	keep := fs.Bool("keep", false, "keep the lab's directory (logs, kubeconfigs)")
	timeout := fs.Duration("timeout", 90*time.Second, "how long to wait for the supervisor to stop before killing it")
	_ = fs.Parse(args)
	s, err := readState(*dir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Printf("No lab in %s.\n", *dir)
		return nil
	}
	if err != nil {
		return err
	}
	if alive(s.SupervisorPID) {
		_ = syscall.Kill(s.SupervisorPID, syscall.SIGTERM)
		deadline := time.Now().Add(*timeout)
		for alive(s.SupervisorPID) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if alive(s.SupervisorPID) {
			fmt.Fprintf(os.Stderr, "the supervisor did not stop within %v; killing it (its components die with it)\n", *timeout)
			_ = syscall.Kill(s.SupervisorPID, syscall.SIGKILL)
		}
	}
	// Components die with their supervisor (Pdeathsig); make sure none is left.
	for name, pid := range s.Components {
		if alive(pid) {
			fmt.Fprintf(os.Stderr, "killing leftover %s (PID %d)\n", name, pid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	if !*keep {
		if err := os.RemoveAll(*dir); err != nil {
			return err
		}
	}
	fmt.Println("The lab is down.")
	return nil
}

// rssKiB returns a process's resident memory in KiB (0 when unknown).
func rssKiB(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int64
			_, _ = fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kib)
			return kib
		}
	}
	return 0
}

func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	dir := fs.String("dir", defaultDir(), "directory of the lab")
	_ = fs.Parse(args)
	s, err := readState(*dir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Printf("No lab in %s.\n", *dir)
		return nil
	}
	if err != nil {
		return err
	}
	if !alive(s.SupervisorPID) {
		return fmt.Errorf("the lab's supervisor (PID %d) is not running; run livemigrate-lab down to clean up", s.SupervisorPID)
	}
	if !s.Ready {
		fmt.Printf("The lab in %s is starting (supervisor PID %d).\n", *dir, s.SupervisorPID)
		return nil
	}
	fmt.Printf("Lab in %s, supervisor PID %d, up in %s.\n\nComponents:\n", *dir, s.SupervisorPID, s.StartupDuration)
	names := make([]string, 0, len(s.Components))
	for n := range s.Components {
		names = append(names, n)
	}
	sort.Strings(names)
	down := 0
	total := rssKiB(s.SupervisorPID)
	for _, n := range names {
		st := "running"
		rss := int64(0)
		if !alive(s.Components[n]) {
			st = "EXITED"
			down++
		} else {
			rss = rssKiB(s.Components[n])
			total += rss
		}
		fmt.Printf("  %-45s PID %-8d %-8s %6d MiB\n", n, s.Components[n], st, rss/1024)
	}
	fmt.Printf("  %-45s %24d MiB resident in total (with the supervisor)\n", "", total/1024)
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfigs["karmada"])
	if err != nil {
		return err
	}
	kc, err := karmadaclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clusters, err := kc.ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing member clusters: %w", err)
	}
	fmt.Println("\nMember clusters:")
	for _, c := range clusters.Items {
		ready := "NotReady"
		for _, cond := range c.Status.Conditions {
			if cond.Type == clusterv1alpha1.ClusterConditionReady && cond.Status == metav1.ConditionTrue {
				ready = "Ready"
			}
		}
		fmt.Printf("  %-10s %-8s %s\n", c.Name, ready, c.Spec.APIEndpoint)
	}
	if down > 0 {
		return fmt.Errorf("%d components exited; see %s/lab/logs", down, *dir)
	}
	return nil
}
