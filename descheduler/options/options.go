package options

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-base/featuregate"

	"github.com/livemigrate/livemigrate/internal/features"
)

// Options are the livemigrate-descheduler's flags.
type Options struct {
	// Kubeconfig of the Karmada control plane; in-cluster when empty.
	Kubeconfig string

	// FeatureGates are the descheduler's feature gates (--feature-gates).
	FeatureGates featuregate.MutableFeatureGate

	MetricsBindAddress     string
	HealthProbeBindAddress string
	LeaderElect            bool
	LeaderElectionID       string
	LeaderElectionNS       string

	// EnableWebhook serves the validating webhook on WebhookPort with the
	// certificate in WebhookCertDir.
	EnableWebhook  bool
	WebhookHost    string
	WebhookPort    int
	WebhookCertDir string

	// PollInterval re-checks phases that wait on member clusters.
	PollInterval time.Duration
	// DefaultDowntimeBudget applies when spec.downtimeBudget is empty.
	DefaultDowntimeBudget time.Duration
	// DefaultBandwidth (bytes/s) estimates transfers when nothing was measured.
	DefaultBandwidth resource.Quantity
	// PreCopyThreshold and PreCopyMaxRounds are the pre-copy defaults.
	PreCopyThreshold resource.Quantity
	PreCopyMaxRounds int32
	// DefaultCheckpointEstimate is the checkpoint size assumed for a
	// container without a memory limit or request.
	DefaultCheckpointEstimate resource.Quantity

	// CheckpointRepository is where the agents push checkpoint images.
	CheckpointRepository string
	// CheckpointRepositoryFor maps a target cluster to the repository the
	// checkpoint images of migrations into it are pushed to (a registry
	// near that cluster, so that the images cross the link between the
	// clusters once and the target nodes pull them over their LAN);
	// clusters it does not name use CheckpointRepository.
	CheckpointRepositoryFor map[string]string
	// CheckpointRegistryInsecure allows plain HTTP to the registry.
	CheckpointRegistryInsecure bool
	// CheckpointPushSecret names the push Secret in the workload's namespace.
	CheckpointPushSecret string
	// CheckpointTimeout bounds each kubelet checkpoint call.
	CheckpointTimeout time.Duration

	// ReplicationTargetRoot is the directory of the target nodes under
	// which local volumes are created for node-local source volumes (one
	// of the agents' --replication-target-roots).
	ReplicationTargetRoot string

	// SchedulerConfig is the livemigrate scheduler plugins' configuration
	// file (plugins/config), used to score targets; defaults when empty.
	SchedulerConfig string

	MemberQPS   float32
	MemberBurst int

	// DowntimeHistory is how many earlier successful migrations into the
	// same target the downtime estimate learns the dump, pull and restore
	// time from; 0 disables it.
	DowntimeHistory int

	// RollbackAbortWait bounds how long a rollback waits for the agents to
	// confirm that volume replication stopped.
	RollbackAbortWait time.Duration

	// MaxActive and MaxActivePerCluster bound concurrent migrations; 0 is unlimited.
	MaxActive           int
	MaxActivePerCluster int

	// SourceClaimPolicy (Retain or Delete) is what becomes of the source
	// cluster's claims after a successful migration.
	SourceClaimPolicy string
	// AgentNamespace is the namespace the agents run in, in the members:
	// the per-migration replication credentials are written there (never
	// in the workload's namespace), and the compatibility check reads the
	// agents' node report Leases from there (CRIU version and check).
	AgentNamespace string
	// AgentNamespaceFor overrides AgentNamespace per member cluster.
	AgentNamespaceFor map[string]string
	// SourceClaimRetention is how long a retained source claim is kept;
	// 0 keeps it until it is deleted or adopted.
	SourceClaimRetention time.Duration
	// MaintenanceTaintKeys are the Cluster taint keys that drain a cluster
	// (effect NoSchedule or NoExecute); empty disables the maintenance trigger.
	MaintenanceTaintKeys []string
	// MaintenanceRetryInterval is how long after a drain's live migration
	// of a LiveMigrate workload failed the drain tries it again.
	MaintenanceRetryInterval time.Duration

	// RebalanceInterval is how often a load rebalancing round runs; 0
	// disables the trigger.
	RebalanceInterval time.Duration
	// RebalanceMode is Off, DryRun (decide, record, move nothing) or Auto.
	RebalanceMode string
	// RebalanceHigh and RebalanceLow are the utilization bands, in percent.
	RebalanceHigh, RebalanceLow int
	// RebalanceCooldown keeps a workload from moving again after any
	// migration of it, and load from moving back along a pair of clusters.
	RebalanceCooldown time.Duration
	// RebalanceMaxMovesPerRound bounds the moves of one round.
	RebalanceMaxMovesPerRound int
}

// Load rebalancing modes (--rebalance-mode).
const (
	RebalanceOff    = "Off"
	RebalanceDryRun = "DryRun"
	RebalanceAuto   = "Auto"
)

// New returns the default options.
func New() *Options {
	return &Options{
		FeatureGates:              features.New(),
		MetricsBindAddress:        ":8080",
		HealthProbeBindAddress:    ":8081",
		LeaderElectionID:          "livemigrate-descheduler",
		LeaderElectionNS:          "karmada-system",
		EnableWebhook:             true,
		WebhookPort:               9443,
		WebhookCertDir:            "/tmp/k8s-webhook-server/serving-certs",
		PollInterval:              2 * time.Second,
		DefaultDowntimeBudget:     10 * time.Second,
		DefaultBandwidth:          resource.MustParse("100Mi"),
		PreCopyThreshold:          resource.MustParse("64Mi"),
		PreCopyMaxRounds:          5,
		DefaultCheckpointEstimate: resource.MustParse("256Mi"),
		CheckpointTimeout:         2 * time.Minute,
		RollbackAbortWait:         2 * time.Minute, // as migration.DefaultAbortWait
		DowntimeHistory:           10,              // as migration.DefaultDowntimeHistory
		ReplicationTargetRoot:     "/var/lib/livemigrate/volumes",
		MemberQPS:                 20,
		MemberBurst:               40,
		MaxActive:                 10,
		MaxActivePerCluster:       2,
		SourceClaimPolicy:         "Retain",
		AgentNamespace:            "livemigrate-system",
		MaintenanceTaintKeys:      []string{"livemigrate.io/maintenance"}, // maintenance.DefaultTaintKey
		MaintenanceRetryInterval:  5 * time.Minute,
		// A round every 5 minutes that only records what it would do: a
		// new install moves nothing by itself, and the plan is there to
		// read before --rebalance-mode=Auto.
		RebalanceInterval:         5 * time.Minute,
		RebalanceMode:             RebalanceDryRun,
		RebalanceHigh:             80,
		RebalanceLow:              50,
		RebalanceCooldown:         time.Hour,
		RebalanceMaxMovesPerRound: 5,
	}
}

// AddFlags registers the flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the Karmada control plane (in-cluster config when empty).")
	o.FeatureGates.AddFlag(fs)
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address the Prometheus metrics are served on; 0 disables.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "Address of /healthz and /readyz.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect a leader so that only one replica acts.")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "Name of the leader-election Lease.")
	fs.StringVar(&o.LeaderElectionNS, "leader-election-namespace", o.LeaderElectionNS, "Namespace of the leader-election Lease.")
	fs.BoolVar(&o.EnableWebhook, "enable-webhook", o.EnableWebhook, "Serve the LiveMigration validating webhook.")
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "Address the webhook server binds to (all addresses when empty).")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "Port of the webhook server.")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", o.WebhookCertDir, "Directory holding tls.crt and tls.key for the webhook server.")
	fs.DurationVar(&o.PollInterval, "poll-interval", o.PollInterval, "How often a phase waiting on a member cluster is re-checked.")
	fs.DurationVar(&o.DefaultDowntimeBudget, "default-downtime-budget", o.DefaultDowntimeBudget, "Downtime budget of a LiveMigration without spec.downtimeBudget.")
	fs.Var(quantityFlag{&o.DefaultBandwidth}, "default-bandwidth", "Bytes per second assumed to estimate downtime when nothing was measured (e.g. 100Mi).")
	fs.Var(quantityFlag{&o.PreCopyThreshold}, "precopy-threshold", "Delta size under which volume pre-copy stops, when spec.preCopy does not say.")
	fs.Int32Var(&o.PreCopyMaxRounds, "precopy-max-rounds", o.PreCopyMaxRounds, "Maximum volume pre-copy rounds, when spec.preCopy does not say.")
	fs.Var(quantityFlag{&o.DefaultCheckpointEstimate}, "default-checkpoint-estimate", "Checkpoint size assumed for a container without memory limit or request.")
	fs.StringVar(&o.CheckpointRepository, "checkpoint-repository", o.CheckpointRepository, "Registry repository the agents push checkpoint images to (e.g. registry.example:5000/livemigrate). Required.")
	fs.StringToStringVar(&o.CheckpointRepositoryFor, "checkpoint-repository-for", o.CheckpointRepositoryFor, "Repository per target cluster, as cluster=repository pairs separated by commas (e.g. member2=registry.eu:5000/livemigrate): the checkpoint images of a migration into that cluster are pushed there, ideally a registry next to the target cluster, so they cross the inter-cluster link once and the target nodes pull them locally. Other targets use --checkpoint-repository; --checkpoint-registry-insecure and --checkpoint-push-secret apply to every repository.")
	fs.BoolVar(&o.CheckpointRegistryInsecure, "checkpoint-registry-insecure", o.CheckpointRegistryInsecure, "Use plain HTTP to the checkpoint registry.")
	fs.StringVar(&o.CheckpointPushSecret, "checkpoint-push-secret", o.CheckpointPushSecret, "dockerconfigjson Secret, in the workload's namespace of the source cluster, with the push credentials.")
	fs.DurationVar(&o.CheckpointTimeout, "checkpoint-timeout", o.CheckpointTimeout, "Timeout of each kubelet checkpoint call.")
	fs.StringVar(&o.ReplicationTargetRoot, "replication-target-root", o.ReplicationTargetRoot, "Directory of the target nodes under which local volumes are created for local/hostPath source volumes; one of the agents' --replication-target-roots.")
	fs.StringVar(&o.SchedulerConfig, "scheduler-config", o.SchedulerConfig, "Scheduler plugins configuration file (Capacity, Latency) used to pick targets; defaults when empty.")
	fs.IntVar(&o.DowntimeHistory, "downtime-history", o.DowntimeHistory, "How many of the latest successful migrations into the same target cluster the downtime estimate learns the dump, local pull and restore time from (a fixed part, the least time seen, plus the median growth per checkpoint byte seen among migrations of at least 128Mi), added to the transfer time of the final delta and the checkpoints. 0 leaves it out: the estimate is then the transfer alone, which is too low for large memories.")
	fs.DurationVar(&o.RollbackAbortWait, "rollback-abort-wait", o.RollbackAbortWait, "How long a rollback waits, once the source runs again and the target workload is gone, for the agents to confirm that volume replication stopped and its partial copy was removed. After it the replication objects and the claims created in the target are deleted without that confirmation (a dead or partitioned node never gives it), the migration fails with condition ReplicationStopped=False, and the target node may keep partial data until its agent runs again.")
	fs.Float32Var(&o.MemberQPS, "member-qps", o.MemberQPS, "QPS of each member-cluster client.")
	fs.IntVar(&o.MemberBurst, "member-burst", o.MemberBurst, "Burst of each member-cluster client.")
	fs.IntVar(&o.MaxActive, "max-active-migrations", o.MaxActive, "Migrations allowed past Pending at once, globally (0: unlimited).")
	fs.StringVar(&o.AgentNamespace, "agent-namespace", o.AgentNamespace, "Namespace the agents run in, in the member clusters (the chart's member release namespace): each migration's replication credentials (Secret replication-tls-<migration UID>) are written there, where tenants have no rights, and the agents read them only from there (their --replication-secret-namespace); the compatibility check before a migration reads each node's CRIU version and criu check from the agents' node report Leases there. --agent-namespace-for overrides it per cluster.")
	fs.StringToStringVar(&o.AgentNamespaceFor, "agent-namespace-for", o.AgentNamespaceFor, "Agent namespace per member cluster, as cluster=namespace pairs separated by commas (e.g. member2=lm-agents), for members whose agents run in another namespace than --agent-namespace.")
	fs.StringVar(&o.SourceClaimPolicy, "source-claim-policy", o.SourceClaimPolicy, "What becomes of the source cluster's claims once a migration succeeded: Retain keeps each claim and its volume, marked as the retained copy of the workload (a later migration of the workload back into that cluster reuses it as its pre-copy base, or replaces it); Delete deletes them (the volumes follow their reclaim policy). A LiveMigration's annotation livemigrate.io/source-claim-policy overrides it.")
	fs.DurationVar(&o.SourceClaimRetention, "source-claim-retention", o.SourceClaimRetention, "How long a source claim retained after a migration (--source-claim-policy=Retain) is kept before the descheduler deletes it (checked every 5 minutes; never while a pod mounts it; a move back adopts it before that). 0 keeps it until it is deleted or adopted.")
	fs.IntVar(&o.MaxActivePerCluster, "max-active-migrations-per-cluster", o.MaxActivePerCluster, "Migrations allowed past Pending at once per member cluster, as source or target (0: unlimited).")
	fs.StringSliceVar(&o.MaintenanceTaintKeys, "maintenance-taint-keys", o.MaintenanceTaintKeys, "Cluster taint keys that drain a cluster for maintenance (effect NoSchedule or NoExecute), comma-separated; empty disables the maintenance trigger.")
	fs.DurationVar(&o.MaintenanceRetryInterval, "maintenance-retry-interval", o.MaintenanceRetryInterval, "How long after a drain's live migration of a LiveMigrate workload rolled back the drain tries it again.")
	fs.DurationVar(&o.RebalanceInterval, "rebalance-interval", o.RebalanceInterval, "How often a load rebalancing round runs (0 disables it). A round reads the member clusters' utilization and, when some are above --rebalance-high and others below --rebalance-low, picks opted-in workloads to move live. The default, 5m, is far longer than Karmada's refresh of a cluster's resource summary (10s), so each round sees the previous round's moves.")
	fs.StringVar(&o.RebalanceMode, "rebalance-mode", o.RebalanceMode, "Off: no rounds. DryRun (the default): each round records its decisions as events on the workloads and metrics and moves nothing. Auto: the round creates the LiveMigrations it chose (label livemigrate.io/trigger=rebalance).")
	fs.IntVar(&o.RebalanceHigh, "rebalance-high", o.RebalanceHigh, "High band, in percent of allocatable: a cluster above it on CPU, memory or pods (allocated + allocating) is a source of load. A move never puts its receiver above it.")
	fs.IntVar(&o.RebalanceLow, "rebalance-low", o.RebalanceLow, "Low band, in percent of allocatable: a cluster below it on CPU, memory and pods receives load.")
	fs.DurationVar(&o.RebalanceCooldown, "rebalance-cooldown", o.RebalanceCooldown, "A workload is not moved by rebalancing within this long of the end of any migration of it, whatever started it; and no load is moved from B to A within this long of a rebalancing move from A to B.")
	fs.IntVar(&o.RebalanceMaxMovesPerRound, "rebalance-max-moves-per-round", o.RebalanceMaxMovesPerRound, "At most this many live migrations per rebalancing round (the concurrency budget, --max-active-migrations and --max-active-migrations-per-cluster, applies as well).")
}

// Validate returns every invalid option.
func (o *Options) Validate() field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("flags")
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, field.Invalid(p.Child(name), d.String(), "must be positive"))
		}
	}
	positive("poll-interval", o.PollInterval)
	positive("default-downtime-budget", o.DefaultDowntimeBudget)
	positive("checkpoint-timeout", o.CheckpointTimeout)
	positive("rollback-abort-wait", o.RollbackAbortWait)
	if o.DowntimeHistory < 0 || o.DowntimeHistory > 1000 {
		errs = append(errs, field.Invalid(p.Child("downtime-history"), o.DowntimeHistory, "must be between 0 and 1000"))
	}
	if o.CheckpointTimeout > time.Hour {
		errs = append(errs, field.Invalid(p.Child("checkpoint-timeout"), o.CheckpointTimeout.String(), "must be at most 1h"))
	}
	for name, q := range map[string]resource.Quantity{"default-bandwidth": o.DefaultBandwidth, "precopy-threshold": o.PreCopyThreshold} {
		if q.Sign() <= 0 {
			errs = append(errs, field.Invalid(p.Child(name), q.String(), "must be positive"))
		}
	}
	if o.DefaultCheckpointEstimate.Sign() < 0 {
		errs = append(errs, field.Invalid(p.Child("default-checkpoint-estimate"), o.DefaultCheckpointEstimate.String(), "must not be negative"))
	}
	if o.PreCopyMaxRounds < 1 || o.PreCopyMaxRounds > 100 {
		errs = append(errs, field.Invalid(p.Child("precopy-max-rounds"), o.PreCopyMaxRounds, "must be between 1 and 100"))
	}
	if o.CheckpointRepository == "" {
		errs = append(errs, field.Required(p.Child("checkpoint-repository"), "the registry repository the agents push checkpoint images to"))
	} else if err := validRepository(o.CheckpointRepository); err != nil {
		errs = append(errs, field.Invalid(p.Child("checkpoint-repository"), o.CheckpointRepository, err.Error()))
	}
	for cluster, repo := range o.CheckpointRepositoryFor {
		fp := p.Child("checkpoint-repository-for").Key(cluster)
		if msgs := validation.IsDNS1123Subdomain(cluster); len(msgs) > 0 {
			errs = append(errs, field.Invalid(fp, cluster, "not a cluster name: "+strings.Join(msgs, "; ")))
		}
		if err := validRepository(repo); err != nil {
			errs = append(errs, field.Invalid(fp, repo, err.Error()))
		}
	}
	if msgs := validation.IsDNS1123Label(o.AgentNamespace); len(msgs) > 0 {
		errs = append(errs, field.Invalid(p.Child("agent-namespace"), o.AgentNamespace, "not a namespace name ("+strings.Join(msgs, "; ")+"): give the namespace the agents run in, e.g. livemigrate-system"))
	}
	for cluster, ns := range o.AgentNamespaceFor {
		fp := p.Child("agent-namespace-for").Key(cluster)
		if msgs := validation.IsDNS1123Subdomain(cluster); len(msgs) > 0 {
			errs = append(errs, field.Invalid(fp, cluster, "not a cluster name: "+strings.Join(msgs, "; ")))
		}
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, field.Invalid(fp, ns, "not a namespace name ("+strings.Join(msgs, "; ")+"): give the namespace the agents of "+cluster+" run in"))
		}
	}
	if !filepath.IsAbs(o.ReplicationTargetRoot) || filepath.Clean(o.ReplicationTargetRoot) == "/" {
		errs = append(errs, field.Invalid(p.Child("replication-target-root"), o.ReplicationTargetRoot, "must be an absolute directory other than /"))
	}
	if o.SourceClaimRetention < 0 {
		errs = append(errs, field.Invalid(p.Child("source-claim-retention"), o.SourceClaimRetention.String(), "must not be negative (0 keeps retained claims until they are deleted)"))
	}
	if !strings.EqualFold(o.SourceClaimPolicy, "Retain") && !strings.EqualFold(o.SourceClaimPolicy, "Delete") {
		errs = append(errs, field.NotSupported(p.Child("source-claim-policy"), o.SourceClaimPolicy, []string{"Retain", "Delete"}))
	}
	if o.EnableWebhook && (o.WebhookPort < 1 || o.WebhookPort > 65535) {
		errs = append(errs, field.Invalid(p.Child("webhook-port"), o.WebhookPort, "must be a port number"))
	}
	if o.LeaderElect && (o.LeaderElectionID == "" || o.LeaderElectionNS == "") {
		errs = append(errs, field.Required(p.Child("leader-election-id"), "leader election needs an ID and a namespace"))
	}
	if o.MemberQPS <= 0 || o.MemberBurst <= 0 {
		errs = append(errs, field.Invalid(p.Child("member-qps"), fmt.Sprintf("%v/%d", o.MemberQPS, o.MemberBurst), "QPS and burst must be positive"))
	}
	if o.MaxActive < 0 || o.MaxActivePerCluster < 0 {
		errs = append(errs, field.Invalid(p.Child("max-active-migrations"), fmt.Sprintf("%d/%d", o.MaxActive, o.MaxActivePerCluster), "must not be negative (0 is unlimited)"))
	}
	for _, k := range o.MaintenanceTaintKeys {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p.Child("maintenance-taint-keys"), k, "not a taint key: "+strings.Join(msgs, "; ")))
		}
	}
	errs = append(errs, o.validateRebalance(p)...)
	if o.MaintenanceRetryInterval <= 0 {
		errs = append(errs, field.Invalid(p.Child("maintenance-retry-interval"), o.MaintenanceRetryInterval.String(), "must be positive, e.g. 5m"))
	}
	return errs
}

func (o *Options) validateRebalance(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch o.RebalanceMode {
	case RebalanceOff, RebalanceDryRun, RebalanceAuto:
	default:
		errs = append(errs, field.NotSupported(p.Child("rebalance-mode"), o.RebalanceMode, []string{RebalanceOff, RebalanceDryRun, RebalanceAuto}))
	}
	if o.RebalanceInterval < 0 {
		errs = append(errs, field.Invalid(p.Child("rebalance-interval"), o.RebalanceInterval.String(), "must not be negative (0 disables load rebalancing), e.g. 5m"))
	} else if o.RebalanceInterval > 0 && o.RebalanceInterval < 5*time.Second {
		errs = append(errs, field.Invalid(p.Child("rebalance-interval"), o.RebalanceInterval.String(), "must be at least 5s (a round must see the cluster summaries its previous round changed), or 0 to disable"))
	}
	if o.RebalanceHigh < 1 || o.RebalanceHigh > 100 {
		errs = append(errs, field.Invalid(p.Child("rebalance-high"), o.RebalanceHigh, "must be a percentage from 1 to 100, e.g. 80"))
	}
	if o.RebalanceLow < 1 || o.RebalanceLow >= o.RebalanceHigh {
		errs = append(errs, field.Invalid(p.Child("rebalance-low"), o.RebalanceLow, fmt.Sprintf("must be a percentage from 1 to below --rebalance-high (%d), e.g. 50", o.RebalanceHigh)))
	}
	if o.RebalanceCooldown < 0 {
		errs = append(errs, field.Invalid(p.Child("rebalance-cooldown"), o.RebalanceCooldown.String(), "must not be negative, e.g. 1h"))
	}
	if o.RebalanceMaxMovesPerRound < 1 {
		errs = append(errs, field.Invalid(p.Child("rebalance-max-moves-per-round"), o.RebalanceMaxMovesPerRound, "must be at least 1 (use --rebalance-mode=Off or --rebalance-interval=0 to disable)"))
	}
	return errs
}

// Rebalancing reports whether load rebalancing rounds run.
func (o *Options) Rebalancing() bool {
	return o.RebalanceInterval > 0 && o.RebalanceMode != RebalanceOff
}

// validRepository checks that repo is a registry repository without a tag
// or digest (host[:port]/path).
func validRepository(repo string) error {
	if repo == "" {
		return fmt.Errorf("must not be empty")
	}
	if strings.ContainsAny(repo, "@") || strings.Contains(repo[strings.LastIndex(repo, "/")+1:], ":") {
		return fmt.Errorf("must be a repository (host[:port]/path) without a tag or digest")
	}
	if _, err := name.NewRepository(repo); err != nil {
		return fmt.Errorf("not a repository: %w", err)
	}
	return nil
}

// quantityFlag is a pflag.Value over a resource.Quantity.
type quantityFlag struct{ q *resource.Quantity }

func (f quantityFlag) String() string {
	if f.q == nil {
		return ""
	}
	return f.q.String()
}

func (f quantityFlag) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a quantity (e.g. 100Mi): %w", s, err)
	}
	*f.q = q
	return nil
}

func (quantityFlag) Type() string { return "quantity" }
