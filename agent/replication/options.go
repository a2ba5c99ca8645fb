package replication

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/livemigrate/livemigrate/agent/replication/controller"
	"github.com/livemigrate/livemigrate/agent/replication/provision"
)

// Options configure volume replication in the agent.
type Options struct {
	// Enabled turns the VolumeReplication reconciler on.
	Enabled bool
	// NodeName is the agent's node (the agent's own --node-name).
	NodeName string
	// SecretNamespace is the agent's own namespace, the only one it reads
	// the migrations' credentials Secrets from.
	SecretNamespace string
	// ListenHost is the address receivers bind to.
	ListenHost string
	// AdvertiseHost is the address reported to the source (the node IP).
	AdvertiseHost string
	// Port is the agent's replication port: one listener serves every
	// replication this node receives, routing each connection by its TLS
	// server name.
	Port int
	// PortMin and PortMax are the deprecated receiver port range: when
	// PortMin is set, it is used as Port (PortMax is ignored).
	PortMin, PortMax int
	// StartRetryTimeout: a receiver or sender that cannot start for a
	// transient reason is retried this long before the replication fails.
	StartRetryTimeout time.Duration
	// KubeletRoot is the kubelet's root directory on the host.
	KubeletRoot string
	// HostRoot is where the host filesystem is mounted in the agent's
	// container; empty when host paths are visible as they are.
	HostRoot string
	// TargetRoots are the host directories target volumes may live under.
	TargetRoots []string
	// RsyncPath is the rsync binary.
	RsyncPath string
	// BlockSize forces rsync's delta block size (0: rsync's default).
	BlockSize int
	// BandwidthLimit is the default per-replication cap, e.g. "12500000"
	// (bytes/s, 100 Mbit/s) or "10Mi"; empty or 0 means unlimited.
	BandwidthLimit string
	// ConvergenceThreshold and MaxRounds are the pre-copy defaults.
	ConvergenceThreshold string
	MaxRounds            int
	// ProgressInterval throttles status updates during a pass.
	ProgressInterval time.Duration
	// KeepWarmInterval: while a replication waits in PreCopied for the
	// final pass, a further delta pass runs this often; 0 disables.
	KeepWarmInterval time.Duration
	// WholeFinalVerify verifies the whole volume under freeze even after a
	// pre-freeze verification (for filesystems that do not update file
	// times on writes through shared mappings; see package engine).
	WholeFinalVerify bool
}

// DefaultPort is the default replication port.
const DefaultPort = 7870

// DefaultSecretNamespace is the agent's namespace when $POD_NAMESPACE is
// not set: the chart's (and the descheduler's --agent-namespace) default.
const DefaultSecretNamespace = "livemigrate-system"

func defaultSecretNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return DefaultSecretNamespace
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		Enabled:              true,
		NodeName:             os.Getenv("NODE_NAME"),
		SecretNamespace:      defaultSecretNamespace(),
		ListenHost:           "0.0.0.0",
		AdvertiseHost:        os.Getenv("NODE_IP"),
		Port:                 DefaultPort,
		StartRetryTimeout:    controller.DefaultStartRetryTimeout,
		KubeletRoot:          provision.DefaultKubeletRoot,
		TargetRoots:          []string{"/var/lib/livemigrate/volumes"},
		RsyncPath:            "rsync",
		ConvergenceThreshold: "64Mi",
		MaxRounds:            5,
		ProgressInterval:     5 * time.Second,
		KeepWarmInterval:     30 * time.Second,
	}
}

// AddFlags registers the options' flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "replication-enabled", o.Enabled, "Run the VolumeReplication reconciler (volume pre-copy and final sync for live migration).")
	fs.StringVar(&o.SecretNamespace, "replication-secret-namespace", o.SecretNamespace, "The agent's own namespace, the only one it reads the migrations' credentials Secrets from (tenants must have no rights there); the descheduler's --agent-namespace for this cluster. Defaults to $POD_NAMESPACE, else "+DefaultSecretNamespace+".")
	fs.StringVar(&o.ListenHost, "replication-listen-host", o.ListenHost, "Address the replication receivers bind to.")
	fs.StringVar(&o.AdvertiseHost, "replication-advertise-host", o.AdvertiseHost, "Address of this node reported to the source agent in status.endpoint. Defaults to $NODE_IP.")
	fs.IntVar(&o.Port, "replication-port", o.Port, "The port the replication receivers listen on: one port per agent serves every volume this node receives, each connection routed by its TLS server name.")
	fs.IntVar(&o.PortMin, "replication-port-min", o.PortMin, "Deprecated: use --replication-port. When set, its value is used as --replication-port.")
	fs.IntVar(&o.PortMax, "replication-port-max", o.PortMax, "Deprecated: use --replication-port. Ignored.")
	_ = fs.MarkDeprecated("replication-port-min", "one port now serves every replication; use --replication-port (its value is taken as --replication-port)")
	_ = fs.MarkDeprecated("replication-port-max", "one port now serves every replication; use --replication-port (ignored)")
	fs.DurationVar(&o.StartRetryTimeout, "replication-start-retry-timeout", o.StartRetryTimeout, "How long a receiver or sender that cannot start for a transient reason (claim not bound yet, port in use, Secret missing, API error) is retried before its VolumeReplication fails; the reason shows in its ReceiverReady or SenderReady condition meanwhile.")
	fs.StringVar(&o.KubeletRoot, "replication-kubelet-root", o.KubeletRoot, "The kubelet's root directory on the host (pod volume mounts are read below it).")
	fs.StringVar(&o.HostRoot, "replication-host-root", o.HostRoot, "Where the host's filesystem is mounted in the agent's container; empty if host paths are visible as they are.")
	fs.StringSliceVar(&o.TargetRoots, "replication-target-roots", o.TargetRoots, "Host directories under which target volumes (local/hostPath) may be written; anything else is refused.")
	fs.StringVar(&o.RsyncPath, "replication-rsync", o.RsyncPath, "The rsync binary (Debian package rsync).")
	fs.IntVar(&o.BlockSize, "replication-block-size", o.BlockSize, "rsync delta block size in bytes; 0 lets rsync choose (about the square root of the file size).")
	fs.StringVar(&o.BandwidthLimit, "replication-bandwidth-limit", o.BandwidthLimit, "Default bandwidth cap per replication in bytes per second (a quantity, e.g. 12500000 or 10Mi); 0 or empty means unlimited. spec.bandwidthLimit overrides it.")
	fs.StringVar(&o.ConvergenceThreshold, "replication-convergence-threshold", o.ConvergenceThreshold, "Default pre-copy convergence threshold (a quantity of bytes).")
	fs.IntVar(&o.MaxRounds, "replication-max-rounds", o.MaxRounds, "Default maximum number of pre-copy rounds, the full pass included.")
	fs.DurationVar(&o.ProgressInterval, "replication-progress-interval", o.ProgressInterval, "Minimum interval between status updates during a pass.")
	fs.DurationVar(&o.KeepWarmInterval, "replication-keep-warm-interval", o.KeepWarmInterval, "While a replication waits in PreCopied for the final pass, run a further delta pass this often so that the final delta stays small; 0 disables.")
	fs.BoolVar(&o.WholeFinalVerify, "replication-whole-final-verify", o.WholeFinalVerify, "Checksum the whole volume under freeze even after a pre-freeze verification (by default only entries that changed since are read).")
}

// Validate checks the options.
func (o *Options) Validate() error {
	if !o.Enabled {
		return nil
	}
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("replication needs the node name (--node-name or $NODE_NAME)"))
	}
	if msgs := validation.IsDNS1123Label(o.SecretNamespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--replication-secret-namespace %q is not a namespace name (%s): give the agent's own namespace, e.g. %s", o.SecretNamespace, strings.Join(msgs, "; "), DefaultSecretNamespace))
	}
	if net.ParseIP(o.ListenHost) == nil {
		errs = append(errs, fmt.Errorf("--replication-listen-host %q is not an IP address", o.ListenHost))
	}
	if o.AdvertiseHost == "" {
		errs = append(errs, errors.New("--replication-advertise-host (or $NODE_IP) is required"))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--replication-port %d must be in [1, 65535]", o.Port))
	}
	if o.PortMin != 0 {
		if o.PortMin < 1 || o.PortMin > 65535 {
			errs = append(errs, fmt.Errorf("--replication-port-min %d must be in [1, 65535] (it is deprecated: use --replication-port)", o.PortMin))
		}
		if o.Port != DefaultPort && o.Port != o.PortMin {
			errs = append(errs, fmt.Errorf("--replication-port %d and the deprecated --replication-port-min %d disagree: give only --replication-port", o.Port, o.PortMin))
		}
	}
	if o.StartRetryTimeout <= 0 {
		errs = append(errs, errors.New("--replication-start-retry-timeout must be positive"))
	}
	if !filepath.IsAbs(o.KubeletRoot) {
		errs = append(errs, fmt.Errorf("--replication-kubelet-root %q must be absolute", o.KubeletRoot))
	}
	if o.HostRoot != "" && !filepath.IsAbs(o.HostRoot) {
		errs = append(errs, fmt.Errorf("--replication-host-root %q must be absolute", o.HostRoot))
	}
	if len(o.TargetRoots) == 0 {
		errs = append(errs, errors.New("--replication-target-roots must name at least one directory"))
	}
	for _, r := range o.TargetRoots {
		if !filepath.IsAbs(r) || filepath.Clean(r) == "/" {
			errs = append(errs, fmt.Errorf("target root %q must be an absolute directory other than /", r))
		}
	}
	if o.RsyncPath == "" {
		errs = append(errs, errors.New("--replication-rsync must not be empty"))
	}
	if o.BlockSize < 0 || (o.BlockSize > 0 && o.BlockSize < 512) || o.BlockSize > 128*1024 {
		errs = append(errs, fmt.Errorf("--replication-block-size %d must be 0 or in [512, 131072]", o.BlockSize))
	}
	if _, err := quantity(o.BandwidthLimit); err != nil {
		errs = append(errs, fmt.Errorf("--replication-bandwidth-limit: %w", err))
	}
	if _, err := quantity(o.ConvergenceThreshold); err != nil {
		errs = append(errs, fmt.Errorf("--replication-convergence-threshold: %w", err))
	}
	if o.MaxRounds < 1 || o.MaxRounds > 100 {
		errs = append(errs, fmt.Errorf("--replication-max-rounds %d must be in [1, 100]", o.MaxRounds))
	}
	if o.ProgressInterval <= 0 {
		errs = append(errs, errors.New("--replication-progress-interval must be positive"))
	}
	if o.KeepWarmInterval < 0 {
		errs = append(errs, errors.New("--replication-keep-warm-interval must not be negative"))
	}
	return errors.Join(errs...)
}

func quantity(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, err
	}
	if q.Sign() < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return q.Value(), nil
}

// Config converts validated options to the reconciler's configuration.
func (o *Options) Config() controller.Config {
	bw, _ := quantity(o.BandwidthLimit)
	threshold, _ := quantity(o.ConvergenceThreshold)
	return controller.Config{
		NodeName:                    o.NodeName,
		SecretNamespace:             o.SecretNamespace,
		KubeletRoot:                 o.KubeletRoot,
		HostRoot:                    o.HostRoot,
		TargetRoots:                 append([]string(nil), o.TargetRoots...),
		ListenHost:                  o.ListenHost,
		AdvertiseHost:               o.AdvertiseHost,
		Port:                        o.port(),
		StartRetryTimeout:           o.StartRetryTimeout,
		RsyncPath:                   o.RsyncPath,
		BlockSize:                   o.BlockSize,
		DefaultBandwidthLimit:       bw,
		DefaultConvergenceThreshold: threshold,
		DefaultMaxRounds:            o.MaxRounds,
		ProgressInterval:            o.ProgressInterval,
		KeepWarmInterval:            o.KeepWarmInterval,
		WholeFinalVerify:            o.WholeFinalVerify,
	}
}

// port is the replication port, honouring the deprecated range flag.
func (o *Options) port() int {
	if o.PortMin != 0 {
		return o.PortMin
	}
	return o.Port
}

// Setup adds the VolumeReplication reconciler to the agent's manager. The
// manager's scheme must include agent.livemigrate.io/v1alpha1 and core/v1.
func Setup(mgr ctrl.Manager, o *Options) error {
	if !o.Enabled {
		return nil
	}
	if err := o.Validate(); err != nil {
		return err
	}
	controller.RegisterMetrics()
	r := &controller.VolumeReplicationReconciler{
		Client:   mgr.GetClient(),
		Reader:   mgr.GetAPIReader(),
		Clock:    clock.RealClock{},
		Recorder: mgr.GetEventRecorder("livemigrate-replication"),
		Config:   o.Config(),
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the VolumeReplication controller: %w", err)
	}
	ctrl.Log.WithName("replication").Info("Volume replication enabled", "node", o.NodeName, "advertiseHost", o.AdvertiseHost, "port", o.port())
	return nil
}
