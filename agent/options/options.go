package options

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/component-base/featuregate"

	"github.com/livemigrate/livemigrate/internal/features"
)

// Mode selects what the binary runs.
type Mode string

const (
	// ModeNode is the DaemonSet: PodCheckpoints of this node.
	ModeNode Mode = "node"
	// ModeRestore is the Deployment: the restore webhook and PodRestore
	// status.
	ModeRestore Mode = "restore"
	// ModeAll runs both (labs and single-node clusters).
	ModeAll Mode = "all"
)

// Options of the livemigrate-agent.
type Options struct {
	// FeatureGates are the agent's feature gates (--feature-gates).
	FeatureGates featuregate.MutableFeatureGate

	Mode       string
	NodeName   string
	Kubeconfig string

	KubeletAddress            string
	KubeletPort               int
	KubeletDefaultPort        int
	KubeletCAFile             string
	KubeletInsecureSkipVerify bool
	KubeletTokenFile          string
	CheckpointTimeoutGrace    time.Duration

	CheckpointDir         string
	ArchiveMaxBytes       int64
	ArchiveMaxMemberBytes int64

	CgroupRoot    string
	CgroupParent  string
	CgroupDriver  string
	CgroupVersion string
	FreezeTimeout time.Duration

	InsecureRegistries []string
	// ProbeRegistries are the registries the node report probes.
	ProbeRegistries []string

	WebhookPort    int
	WebhookCertDir string
	WebhookHost    string
	ClaimTTL       time.Duration
	LeaderElect    bool
	// LeaderElectionNamespace holds the restore replicas' Lease; empty
	// means the pod's own namespace (in-cluster only).
	LeaderElectionNamespace string

	MetricsBindAddress     string
	HealthProbeBindAddress string

	// ReportNamespace holds the node report Leases (package report);
	// empty disables the report.
	ReportNamespace string
	ReportInterval  time.Duration
	// CRIU is the node's criu binary, as the agent sees it (a host path
	// mounted into its container); the report carries its version and
	// what criu check said. Empty leaves them out.
	CRIU string
}

// New returns the defaults.
func New() *Options {
	return &Options{
		FeatureGates:           features.New(),
		Mode:                   string(ModeNode),
		NodeName:               os.Getenv("NODE_NAME"),
		KubeletDefaultPort:     10250,
		KubeletTokenFile:       "/var/run/secrets/kubernetes.io/serviceaccount/token",
		CheckpointTimeoutGrace: 30 * time.Second,
		CheckpointDir:          "/var/lib/kubelet/checkpoints",
		ArchiveMaxBytes:        96 << 30,
		ArchiveMaxMemberBytes:  64 << 30,
		CgroupRoot:             "/sys/fs/cgroup",
		CgroupVersion:          "auto",
		FreezeTimeout:          30 * time.Second,
		WebhookPort:            9443,
		WebhookCertDir:         "/etc/livemigrate/webhook-certs",
		ClaimTTL:               2 * time.Minute,
		MetricsBindAddress:     ":8080",
		HealthProbeBindAddress: ":8081",
		ReportNamespace:        os.Getenv("POD_NAMESPACE"),
		ReportInterval:         15 * time.Second,
	}
}

// AddFlags registers the flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.FeatureGates.AddFlag(fs)
	fs.StringVar(&o.Mode, "mode", o.Mode, "What to run: 'node' (DaemonSet: freeze, checkpoint and push the PodCheckpoints of --node-name), 'restore' (Deployment: the restore admission webhook and PodRestore status), or 'all' (both, for labs).")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "Name of the node this agent serves; only PodCheckpoints with this spec.nodeName are acted on. Defaults to $NODE_NAME. Required in node and all modes.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the member cluster; in-cluster configuration when empty.")
	fs.StringVar(&o.KubeletAddress, "kubelet-address", o.KubeletAddress, "Host of the kubelet's checkpoint API; the Node's InternalIP when empty.")
	fs.IntVar(&o.KubeletPort, "kubelet-port", o.KubeletPort, "Port of the kubelet; the Node's status.daemonEndpoints.kubeletEndpoint.Port when 0.")
	fs.IntVar(&o.KubeletDefaultPort, "kubelet-default-port", o.KubeletDefaultPort, "Kubelet port used when neither --kubelet-port nor the Node names one.")
	fs.StringVar(&o.KubeletCAFile, "kubelet-ca-file", o.KubeletCAFile, "CA bundle verifying the kubelet's serving certificate; system roots when empty.")
	fs.BoolVar(&o.KubeletInsecureSkipVerify, "kubelet-insecure-skip-tls-verify", o.KubeletInsecureSkipVerify, "Do not verify the kubelet's serving certificate (labs only).")
	fs.StringVar(&o.KubeletTokenFile, "kubelet-token-file", o.KubeletTokenFile, "Bearer token for the kubelet (the agent's ServiceAccount token, which needs nodes/checkpoint); re-read when it rotates. Empty sends no token.")
	fs.DurationVar(&o.CheckpointTimeoutGrace, "checkpoint-timeout-grace", o.CheckpointTimeoutGrace, "Added to a PodCheckpoint's timeoutSeconds for the HTTP deadline of a kubelet checkpoint call.")
	fs.StringVar(&o.CheckpointDir, "checkpoint-dir", o.CheckpointDir, "Where the agent finds the archives the kubelet reports (the kubelet's <root-dir>/checkpoints, mounted from the host).")
	fs.Int64Var(&o.ArchiveMaxBytes, "archive-max-bytes", o.ArchiveMaxBytes, "Largest total size of a checkpoint archive's members; larger archives are rejected.")
	fs.Int64Var(&o.ArchiveMaxMemberBytes, "archive-max-member-bytes", o.ArchiveMaxMemberBytes, "Largest single member of a checkpoint archive.")
	fs.StringVar(&o.CgroupRoot, "cgroup-root", o.CgroupRoot, "Mount point of the host's cgroup file systems.")
	fs.StringVar(&o.CgroupParent, "cgroup-parent", o.CgroupParent, "The kubelet's --cgroup-root below the mount point (where kubepods lives); empty for the top.")
	fs.StringVar(&o.CgroupDriver, "cgroup-driver", o.CgroupDriver, "The kubelet's cgroup driver: 'cgroupfs', 'systemd', or empty to look for both layouts.")
	fs.StringVar(&o.CgroupVersion, "cgroup-version", o.CgroupVersion, "Freezer to use: 'v1' (freezer controller), 'v2' (cgroup.freeze) or 'auto' (v2 on unified hosts, else v1).")
	fs.DurationVar(&o.FreezeTimeout, "freeze-timeout", o.FreezeTimeout, "How long to wait for the kernel to report a pod frozen before giving up (and thawing it).")
	fs.StringSliceVar(&o.InsecureRegistries, "insecure-registries", o.InsecureRegistries, "Registry hosts (host:port) reached over plain HTTP.")
	fs.StringSliceVar(&o.ProbeRegistries, "probe-registries", o.ProbeRegistries, "Registry hosts (host[:port]) this node pushes checkpoint images to or pulls them from; the node report (--report-namespace) says whether each answers GET /v2/ from here (plain HTTP for --insecure-registries), and kubectl livemigrate doctor fails a node that cannot reach one.")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "Port of the restore admission webhook (restore and all modes).")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", o.WebhookCertDir, "Directory with tls.crt and tls.key for the webhook server.")
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "Address the webhook server binds; all addresses when empty.")
	fs.DurationVar(&o.ClaimTTL, "restore-claim-ttl", o.ClaimTTL, "A checkpoint claimed by a pod that never appeared is freed after this long.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect a leader among restore-mode replicas (the PodRestore status controller runs on the leader; the webhook on every replica).")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "Namespace of the restore replicas' leader-election Lease; the pod's own namespace when empty (in-cluster only).")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address of the Prometheus metrics endpoint (livemigrate_agent_*); '0' disables it.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "Address of the /healthz and /readyz endpoints; '0' disables them.")
	fs.StringVar(&o.ReportNamespace, "report-namespace", o.ReportNamespace, "Namespace of the node report Lease livemigrate-agent-<node> (kernel, architecture, runtime; read by kubectl livemigrate doctor) in node and all modes. Defaults to $POD_NAMESPACE; empty disables the report.")
	fs.StringVar(&o.CRIU, "criu", o.CRIU, "The node's criu binary (mounted from the host): the node report carries its version (criu --version) and what criu check said, which the migration's compatibility check and kubectl livemigrate doctor read. Empty leaves them out.")
	fs.DurationVar(&o.ReportInterval, "report-interval", o.ReportInterval, "How often the node report Lease is renewed; it counts as stale after three intervals.")
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	switch Mode(o.Mode) {
	case ModeNode, ModeAll, ModeRestore:
	default:
		errs = append(errs, fmt.Errorf("--mode %q: want node, restore or all", o.Mode))
	}
	if (Mode(o.Mode) == ModeNode || Mode(o.Mode) == ModeAll) && o.NodeName == "" {
		errs = append(errs, fmt.Errorf("--node-name (or $NODE_NAME) is required in %s mode", o.Mode))
	}
	for name, p := range map[string]int{"--kubelet-port": o.KubeletPort, "--webhook-port": o.WebhookPort} {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %d out of range", name, p))
		}
	}
	if o.KubeletDefaultPort <= 0 || o.KubeletDefaultPort > 65535 {
		errs = append(errs, fmt.Errorf("--kubelet-default-port %d out of range", o.KubeletDefaultPort))
	}
	if o.KubeletAddress != "" && net.ParseIP(o.KubeletAddress) == nil {
		if _, err := strconv.Atoi(o.KubeletAddress); err == nil {
			errs = append(errs, fmt.Errorf("--kubelet-address %q is not a host", o.KubeletAddress))
		}
	}
	if o.CheckpointDir == "" {
		errs = append(errs, fmt.Errorf("--checkpoint-dir is required"))
	}
	if o.ArchiveMaxBytes <= 0 || o.ArchiveMaxMemberBytes <= 0 || o.ArchiveMaxMemberBytes > o.ArchiveMaxBytes {
		errs = append(errs, fmt.Errorf("--archive-max-member-bytes (%d) must be positive and at most --archive-max-bytes (%d)", o.ArchiveMaxMemberBytes, o.ArchiveMaxBytes))
	}
	switch o.CgroupDriver {
	case "", "cgroupfs", "systemd":
	default:
		errs = append(errs, fmt.Errorf("--cgroup-driver %q: want cgroupfs, systemd or empty", o.CgroupDriver))
	}
	switch o.CgroupVersion {
	case "auto", "v1", "v2":
	default:
		errs = append(errs, fmt.Errorf("--cgroup-version %q: want auto, v1 or v2", o.CgroupVersion))
	}
	if o.FreezeTimeout <= 0 || o.CheckpointTimeoutGrace < 0 || o.ClaimTTL <= 0 {
		errs = append(errs, fmt.Errorf("--freeze-timeout and --restore-claim-ttl must be positive, --checkpoint-timeout-grace not negative"))
	}
	if o.ReportNamespace != "" && o.ReportInterval < time.Second {
		errs = append(errs, fmt.Errorf("--report-interval %s must be at least 1s (or disable the report with --report-namespace=\"\")", o.ReportInterval))
	}
	if len(errs) == 0 {
		return nil
	}
	return joinErrors(errs)
}

type multiError []error

func (m multiError) Error() string {
	s := ""
	for i, e := range m {
		if i > 0 {
			s += "; "
		}
		s += e.Error()
	}
	return s
}

func (m multiError) Unwrap() []error { return m }

func joinErrors(errs []error) error { return multiError(errs) }
