package app

import (
	"context"
	"fmt"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/hooks/agentcr"
	"github.com/livemigrate/livemigrate/descheduler/hooks/workload"
	"github.com/livemigrate/livemigrate/descheduler/maintenance"
	"github.com/livemigrate/livemigrate/descheduler/member"
	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/descheduler/migration"
	"github.com/livemigrate/livemigrate/descheduler/options"
	"github.com/livemigrate/livemigrate/descheduler/placement"
	"github.com/livemigrate/livemigrate/descheduler/placementtrigger"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/descheduler/rebalance"
	"github.com/livemigrate/livemigrate/descheduler/webhook"
	"github.com/livemigrate/livemigrate/internal/features"
	"github.com/livemigrate/livemigrate/plugins/capacity"
	pluginconfig "github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/plugins/latency"
)

// KarmadaScheme holds the types the descheduler reads in the Karmada plane.
func KarmadaScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, lmv1alpha1.AddToScheme,
		clusterv1alpha1.Install, workv1alpha1.Install, workv1alpha2.Install, policyv1alpha1.Install,
	} {
		utilMust(add(s))
	}
	return s
}

// MemberScheme holds the types the descheduler writes in member clusters.
func MemberScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilMust(clientgoscheme.AddToScheme(s))
	utilMust(agentv1alpha1.AddToScheme(s))
	return s
}

func utilMust(err error) {
	if err != nil {
		panic(err)
	}
}

// NewCommand returns the livemigrate-descheduler command.
func NewCommand(ctx context.Context) *cobra.Command {
	o := options.New()
	logOpts := logs.NewOptions()
	cmd := &cobra.Command{
		Use:   "livemigrate-descheduler",
		Short: "Runs the LiveMigration controller and its validating webhook against the Karmada control plane",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := logsapi.ValidateAndApply(logOpts, nil); err != nil {
				return err
			}
			if errs := o.Validate(); len(errs) > 0 {
				return fmt.Errorf("invalid flags: %w", errs.ToAggregate())
			}
			return Run(ctx, o)
		},
		SilenceUsage: true,
	}
	o.AddFlags(cmd.Flags())
	logsapi.AddFlags(logOpts, cmd.Flags())
	return cmd
}

func restConfig(o *options.Options) (*rest.Config, error) {
	if o.Kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	}
	return ctrl.GetConfig()
}

// Run starts the manager and blocks until ctx ends.
func Run(ctx context.Context, o *options.Options) error {
	logger := klog.FromContext(ctx)
	ctrl.SetLogger(logger)
	cfg, err := restConfig(o)
	if err != nil {
		return fmt.Errorf("loading the Karmada kubeconfig: %w", err)
	}
	scheme := KarmadaScheme()
	mgrOpts := ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        o.LeaderElectionID,
		LeaderElectionNamespace: o.LeaderElectionNS,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// Member credentials live in karmada-cluster only; the RBAC grants no more.
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{"karmada-cluster": {}}},
		}},
	}
	if o.EnableWebhook {
		mgrOpts.WebhookServer = ctrlwebhook.NewServer(ctrlwebhook.Options{Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.WebhookCertDir})
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	metrics.Register()

	plugins, err := scoringPlugins(ctx, mgr, o.SchedulerConfig)
	if err != nil {
		return err
	}
	// Targets: the Capacity and Latency scoring, behind karmada-scheduler's
	// taint and affinity filters and never a cluster being drained.
	filters := append(placement.SchedulerFilters(), &maintenance.Filter{Keys: o.MaintenanceTaintKeys})
	picker := &placement.Picker{Client: mgr.GetClient(), Plugins: append(filters, plugins...)}
	members := &member.Clients{Reader: mgr.GetClient(), Scheme: MemberScheme(), QPS: o.MemberQPS, Burst: o.MemberBurst}
	watcher := agentcr.NewWatcher(members, MemberScheme())
	if err := mgr.Add(watcher); err != nil {
		return err
	}
	dest := agentv1alpha1.CheckpointDestination{Repository: o.CheckpointRepository, Insecure: o.CheckpointRegistryInsecure}
	if o.CheckpointPushSecret != "" {
		dest.PushSecretRef = &corev1.LocalObjectReference{Name: o.CheckpointPushSecret}
	}
	claimPolicy, err := migration.ParseSourceClaimPolicy(o.SourceClaimPolicy)
	if err != nil {
		return fmt.Errorf("--source-claim-policy: %w", err)
	}
	// Always: claims retained under an earlier --source-claim-retention
	// carry their own deadline.
	if err := mgr.Add(&agentcr.RetentionSweeper{Clients: members, Clusters: mgr.GetClient(), Clock: clock.RealClock{}}); err != nil {
		return err
	}
	r := &migration.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("livemigrate-descheduler"),
		Clock:     clock.RealClock{},
		Hooks: migration.Hooks{
			Checkpoint: &agentcr.Checkpoint{Clients: members, Destination: dest, RepositoryFor: o.CheckpointRepositoryFor,
				TimeoutSeconds: int32(o.CheckpointTimeout.Seconds()), DefaultEstimate: o.DefaultCheckpointEstimate},
			// The agent replicates every StorageClass; another backend is
			// plugged in per class with ByClass.
			Replication: migration.ReplicationByStorageClass{Default: &agentcr.Replication{Clients: members, LocalRoot: o.ReplicationTargetRoot,
				AgentNamespace: o.AgentNamespace, AgentNamespaceFor: o.AgentNamespaceFor}},
			Restore:       &agentcr.Restore{Clients: members},
			Workload:      &workload.Hook{Clients: members},
			Picker:        picker,
			Watcher:       watcher,
			Compatibility: &workload.Compatibility{Clients: members, AgentNamespace: o.AgentNamespace, AgentNamespaceFor: o.AgentNamespaceFor},
			SourceClaims:  &agentcr.SourceClaims{Clients: members, Policy: claimPolicy, Retention: o.SourceClaimRetention, Clock: clock.RealClock{}},
		},
		MemberEvents: watcher.Events,
		Config: migration.Config{
			PollInterval:          o.PollInterval,
			DefaultDowntimeBudget: o.DefaultDowntimeBudget,
			DefaultBandwidth:      o.DefaultBandwidth.Value(),
			PreCopyThresholdBytes: o.PreCopyThreshold.Value(),
			PreCopyMaxRounds:      o.PreCopyMaxRounds,
			AbortWait:             o.RollbackAbortWait,
			DowntimeHistory:       o.DowntimeHistory,
			MaxActive:             o.MaxActive,
			MaxActivePerCluster:   o.MaxActivePerCluster,
			PostCopy:              o.FeatureGates.Enabled(features.PostCopyMigration),
		},
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the LiveMigration controller: %w", err)
	}
	for _, gvk := range policy.AuditedKinds {
		a := &policy.Auditor{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("livemigrate-descheduler"), GVK: gvk}
		if err := a.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the policy audit of %s: %w", gvk.Kind, err)
		}
	}
	if len(o.MaintenanceTaintKeys) > 0 {
		mr := &maintenance.Reconciler{
			Client:   mgr.GetClient(),
			Recorder: mgr.GetEventRecorder("livemigrate-descheduler"),
			Clock:    clock.RealClock{},
			Policies: &policy.Resolver{Client: mgr.GetClient()},
			Picker:   picker,
			Config: maintenance.Config{
				TaintKeys: o.MaintenanceTaintKeys, MaxActive: o.MaxActive, MaxActivePerCluster: o.MaxActivePerCluster,
				RetryAfter: o.MaintenanceRetryInterval, Resync: maintenanceResync(o.PollInterval),
				DefaultBandwidth: o.DefaultBandwidth.Value(), DefaultCheckpointEstimate: o.DefaultCheckpointEstimate.Value(),
			},
		}
		if err := mr.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the maintenance trigger: %w", err)
		}
	}
	policies := &policy.Resolver{Client: mgr.GetClient()}
	pr := &placementtrigger.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("livemigrate-descheduler"),
		Clock:    clock.RealClock{},
		Policies: policies,
		Config: placementtrigger.Config{
			MaxActive: o.MaxActive, MaxActivePerCluster: o.MaxActivePerCluster,
			RetryAfter: o.MaintenanceRetryInterval, Resync: maintenanceResync(o.PollInterval),
		},
	}
	if err := pr.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the placement trigger: %w", err)
	}
	if o.Rebalancing() {
		rr := &rebalance.Reconciler{
			Planner:  rebalance.NewPlanner(o, mgr.GetClient(), picker.Plugins),
			Client:   mgr.GetClient(),
			Recorder: mgr.GetEventRecorder("livemigrate-descheduler"),
			Clock:    clock.RealClock{},
			Interval: o.RebalanceInterval,
			DryRun:   o.RebalanceMode == options.RebalanceDryRun,
		}
		if err := mgr.Add(rr); err != nil {
			return fmt.Errorf("setting up the load rebalancing trigger: %w", err)
		}
	}
	if o.EnableWebhook {
		mgr.GetWebhookServer().Register(webhook.PlacementPath, &ctrlwebhook.Admission{Handler: webhook.PlacementHold{Client: mgr.GetClient(), Policies: policies}})
		mgr.GetWebhookServer().Register(webhook.Path, &ctrlwebhook.Admission{Handler: webhook.New(mgr.GetAPIReader(), scheme, o.FeatureGates)})
		mgr.GetWebhookServer().Register(webhook.PolicyPath, &ctrlwebhook.Admission{Handler: webhook.PolicyAnnotations{}})
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	logger.Info("Starting livemigrate-descheduler")
	return mgr.Start(ctx)
}

// scoringPlugins builds the Capacity and Latency plugins the way the
// livemigrate-scheduler does, fed from the manager's informers.
func scoringPlugins(ctx context.Context, mgr ctrl.Manager, path string) ([]framework.Plugin, error) {
	cfg, err := pluginconfig.Load(path)
	if err != nil {
		return nil, err
	}
	cp, err := capacity.New(cfg.Capacity)
	if err != nil {
		return nil, err
	}
	clusters, err := mgr.GetCache().GetInformer(ctx, &clusterv1alpha1.Cluster{})
	if err != nil {
		return nil, fmt.Errorf("cluster informer: %w", err)
	}
	if _, err := clusters.AddEventHandler(cp.EventHandler()); err != nil {
		return nil, err
	}
	store := latency.NewStore(*cfg.Latency.Percentile)
	latencies, err := mgr.GetCache().GetInformer(ctx, &lmv1alpha1.ClusterLatency{})
	if err != nil {
		return nil, fmt.Errorf("ClusterLatency informer: %w", err)
	}
	if _, err := latencies.AddEventHandler(store.EventHandler()); err != nil {
		return nil, err
	}
	getters := placement.ReaderGetters{Reader: mgr.GetClient()}
	lp, err := latency.New(cfg.Latency, latency.Handle{Store: store, Templates: getters, Policies: getters})
	if err != nil {
		return nil, err
	}
	return []framework.Plugin{cp, lp}, nil
}

// maintenanceResync re-evaluates draining clusters a few poll intervals
// apart (changes of their LiveMigrations trigger it at once).
func maintenanceResync(poll time.Duration) time.Duration {
	return max(5*poll, 2*time.Second)
}
