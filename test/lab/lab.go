package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"

	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"

	"github.com/livemigrate/livemigrate/test/lab/invariant"
	"github.com/livemigrate/livemigrate/test/lab/relay"
)

// startFailureLogLines is how many lines of each component's log the error
// of a failed Start shows.
const startFailureLogLines = 15

// Cluster is one kube-apiserver of the lab with clients for it.
type Cluster struct {
	// Name is "karmada" for the Karmada plane, the member's name otherwise.
	Name string
	// URL is the apiserver's address, https://127.0.0.1:<port>.
	URL string
	// Kubeconfig is the path of an admin kubeconfig for this cluster.
	Kubeconfig string
	// Config is the admin REST config.
	Config *rest.Config
	// Client is a typed client.
	Client kubernetes.Interface
	// Dynamic is a dynamic client.
	Dynamic dynamic.Interface

	port       int
	etcdPrefix string
}

// KarmadaPlane is the Karmada control plane.
type KarmadaPlane struct {
	Cluster
	// Karmada is a client for Karmada's own APIs.
	Karmada karmadaclient.Interface
}

// Member is a member cluster.
type Member struct {
	Cluster
	// Spec is how the member was configured.
	Spec MemberSpec
	// Nodes are the names of the member's kwok nodes.
	Nodes []string
}

// Lab is a running Karmada control plane with member clusters.
type Lab struct {
	// Dir holds the PKI, kubeconfigs, logs and etcd data.
	Dir string
	// Karmada is the Karmada control plane.
	Karmada *KarmadaPlane
	// Members are the member clusters, in the order of Options.MemberSpecs.
	Members []*Member
	// Origins are the echo endpoints of Options.Origins.
	Origins []*Origin
	// StartupDuration is how long Start took.
	StartupDuration time.Duration

	opts   Options
	root   string
	binDir string
	// criu is the criu binary of the runc node runtime.
	criu    string
	logger  klog.Logger
	pki     *pki
	sup     *supervisor
	etcdURL string
	ports   map[string]int

	ctx    context.Context
	cancel context.CancelFunc

	relayMu sync.Mutex
	relays  map[string]*relay.Relay

	wiresMu  sync.Mutex
	wires    map[string]*relay.Wire
	switches map[string]*relay.Switch

	instancesMu sync.Mutex
	instances   []*Instance

	identityMu sync.Mutex
	identities map[*Member]*memberIdentity
	// monitor is the invariant monitor RunTests started (nil without).
	monitor *invariant.Monitor

	stopOnce sync.Once
}

// Start brings a lab up and returns when every member cluster is Ready in
// Karmada and every component reports ready. On error, everything started
// so far is stopped again.
func Start(ctx context.Context, opts Options) (_ *Lab, err error) {
	begin := time.Now()
	opts, err = opts.complete()
	if err != nil {
		return nil, fmt.Errorf("lab options: %w", err)
	}
	logger := klog.FromContext(ctx).WithName("lab")
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	binDir := opts.BinDir
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
	}
	if err := checkBinaries(binDir, thirdPartyBinaries); err != nil {
		return nil, err
	}
	var criu string
	if opts.NodeRuntime == NodeRuntimeRunc && slices.Contains(opts.Components, "labnode") {
		if criu, err = ensureCRIU(root); err != nil {
			return nil, err
		}
	}

	dir := opts.Dir
	if dir == "" {
		dir, err = os.MkdirTemp("", "livemigrate-lab-")
		if err != nil {
			return nil, fmt.Errorf("creating the lab directory: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the lab directory: %w", err)
	}
	sup, err := newSupervisor(filepath.Join(dir, "logs"), logger)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &Lab{
		Dir: dir, opts: opts, root: root, binDir: binDir, criu: criu, logger: logger, sup: sup,
		ports: map[string]int{}, ctx: klog.NewContext(lctx, logger), cancel: cancel,
		relays: map[string]*relay.Relay{},
	}
	defer func() {
		if err != nil {
			if exitErr := sup.exitErr(); exitErr != nil {
				err = fmt.Errorf("%w\n%v", err, exitErr)
			}
			// Keep the logs of a lab that did not come up, and show their ends.
			l.opts.KeepDir = true
			var logs strings.Builder
			sup.dumpLogs(&logs, startFailureLogLines)
			err = fmt.Errorf("%w\nlab directory kept: %s\n%s", err, dir, logs.String())
			l.Stop()
		}
	}()
	logger.Info("Starting lab", "dir", dir, "members", len(opts.MemberSpecs))

	ctx, cancelStart := context.WithTimeout(ctx, opts.StartTimeout.Duration)
	defer cancelStart()
	// Any component exiting during start-up fails Start at once.
	ctx, cancelOnExit := context.WithCancelCause(ctx)
	defer cancelOnExit(nil)
	go func() {
		if werr := sup.watch(ctx); werr != nil && ctx.Err() == nil {
			cancelOnExit(werr)
		}
	}()
	defer func() {
		if err != nil && context.Cause(ctx) != nil && !errors.Is(context.Cause(ctx), context.Canceled) {
			err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		}
	}()

	// The project's binaries build while the third-party ones start.
	specs, err := l.selectedComponents()
	if err != nil {
		return nil, err
	}
	buildDone := make(chan error, 1)
	go func() { buildDone <- l.buildComponents(specs) }()

	if l.pki, err = newPKI(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}
	if err := l.startEtcd(ctx); err != nil {
		return nil, err
	}

	l.Karmada = &KarmadaPlane{Cluster: Cluster{Name: "karmada", etcdPrefix: "/karmada"}}
	for _, spec := range opts.MemberSpecs {
		l.Members = append(l.Members, &Member{Cluster: Cluster{Name: spec.Name, etcdPrefix: "/" + spec.Name}, Spec: spec})
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range l.clusters() {
		g.Go(func() error { return l.startAPIServer(gctx, c) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if l.Karmada.Karmada, err = karmadaclient.NewForConfig(l.Karmada.Config); err != nil {
		return nil, fmt.Errorf("creating the Karmada client: %w", err)
	}

	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error { return l.startKarmadaPlane(gctx) })
	for _, m := range l.Members {
		g.Go(func() error { return l.startMember(gctx, m) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := l.startOrigins(); err != nil {
		return nil, err
	}
	if err := l.registerMembers(ctx); err != nil {
		return nil, err
	}
	if err := <-buildDone; err != nil {
		return nil, err
	}
	if err := l.startComponents(ctx, specs); err != nil {
		return nil, err
	}
	l.StartupDuration = time.Since(begin)
	logger.Info("Lab is up", "dir", dir, "duration", l.StartupDuration.Round(time.Millisecond))
	return l, nil
}

// clusters returns the Karmada plane and every member.
func (l *Lab) clusters() []*Cluster {
	out := []*Cluster{&l.Karmada.Cluster}
	for _, m := range l.Members {
		out = append(out, &m.Cluster)
	}
	return out
}

// Member returns the member with the given name, or nil.
func (l *Lab) Member(name string) *Member {
	for _, m := range l.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Exits lists the components that exited while the lab was running.
func (l *Lab) Exits() []Exit { return l.sup.Exits() }

// Err returns an error naming every component that exited unexpectedly.
func (l *Lab) Err() error { return l.sup.exitErr() }

// Wait returns when ctx ends or a component exits unexpectedly.
func (l *Lab) Wait(ctx context.Context) error { return l.sup.watch(ctx) }

// DumpLogs writes the last lines of every component's log to w.
func (l *Lab) DumpLogs(w io.Writer, lines int) { l.sup.dumpLogs(w, lines) }

// PIDs returns the process ID of every running component by name.
func (l *Lab) PIDs() map[string]int { return l.sup.pids() }

// Stop stops every component, apiservers after the components that use
// them and etcd last, and removes the lab's directory unless KeepDir was
// set or the directory was given in Options.Dir. It is safe to call more
// than once.
func (l *Lab) Stop() {
	l.stopOnce.Do(func() {
		begin := time.Now()
		l.cancel()
		l.relayMu.Lock()
		for _, r := range l.relays {
			_ = r.Close()
		}
		l.relayMu.Unlock()
		isAPIServer := func(n string) bool { return strings.HasPrefix(n, "kube-apiserver-") }
		l.sup.stopWhere(func(n string) bool { return n != "etcd" && !isAPIServer(n) }, 5*time.Second)
		l.sup.stopWhere(isAPIServer, 10*time.Second)
		l.sup.stopAll(5 * time.Second)
		l.removeContainers()
		l.removeCgroups()
		if l.opts.Dir == "" && !l.opts.KeepDir {
			_ = os.RemoveAll(l.Dir)
		}
		l.logger.Info("Lab stopped", "duration", time.Since(begin).Round(time.Millisecond))
	})
}

// port allocates a named port once.
func (l *Lab) port(name string) (int, error) {
	l.instancesMu.Lock()
	defer l.instancesMu.Unlock()
	if p, ok := l.ports[name]; ok {
		return p, nil
	}
	p, err := FreePort()
	if err != nil {
		return 0, err
	}
	l.ports[name] = p
	return p, nil
}

// bin returns the path of a binary in the lab's bin directory.
func (l *Lab) bin(name string) string { return filepath.Join(l.binDir, name) }

// writeKubeconfig writes an admin kubeconfig for a cluster and fills in its
// clients.
func (l *Lab) writeKubeconfig(c *Cluster) error {
	cert, err := os.ReadFile(l.pki.AdminCert)
	if err != nil {
		return fmt.Errorf("reading the admin certificate: %w", err)
	}
	key, err := os.ReadFile(l.pki.AdminKey)
	if err != nil {
		return fmt.Errorf("reading the admin key: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: l.pki.caPEM}
	cfg.AuthInfos["lab-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: "lab-admin"}
	cfg.CurrentContext = c.Name
	dir := filepath.Join(l.Dir, "kubeconfig")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	c.Kubeconfig = filepath.Join(dir, c.Name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, c.Kubeconfig); err != nil {
		return fmt.Errorf("writing %s: %w", c.Kubeconfig, err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("building the REST config of %s: %w", c.Name, err)
	}
	rc.QPS, rc.Burst = 100, 200
	c.Config = rc
	if c.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("creating a client for %s: %w", c.Name, err)
	}
	if c.Dynamic, err = dynamic.NewForConfig(rc); err != nil {
		return fmt.Errorf("creating a dynamic client for %s: %w", c.Name, err)
	}
	return nil
}

// Kubeconfigs returns every cluster's kubeconfig path by cluster name.
func (l *Lab) Kubeconfigs() map[string]string {
	out := map[string]string{}
	for _, c := range l.clusters() {
		out[c.Name] = c.Kubeconfig
	}
	return out
}

// WriteEnvFile writes a shell file that exports KUBECONFIG (the Karmada
// plane) and LAB_<MEMBER>_KUBECONFIG for every member, with a kubectl
// example, and returns its path.
func (l *Lab) WriteEnvFile() (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Source this file to reach the lab in %s.\n", l.Dir)
	fmt.Fprintf(&b, "export KUBECONFIG=%s\n", l.Karmada.Kubeconfig)
	names := make([]string, 0, len(l.Members))
	for _, m := range l.Members {
		names = append(names, m.Name)
		fmt.Fprintf(&b, "export LAB_%s_KUBECONFIG=%s\n", envName(m.Name), m.Kubeconfig)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "# Example: kubectl get clusters\n")
	if len(names) > 0 {
		fmt.Fprintf(&b, "# Example: kubectl --kubeconfig \"$LAB_%s_KUBECONFIG\" get nodes\n", envName(names[0]))
	}
	path := filepath.Join(l.Dir, "lab.env")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

func envName(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(s))
}

// Ports returns every port the lab allocated, by purpose.
func (l *Lab) Ports() map[string]int {
	l.instancesMu.Lock()
	defer l.instancesMu.Unlock()
	out := make(map[string]int, len(l.ports))
	for k, v := range l.ports {
		out[k] = v
	}
	return out
}
