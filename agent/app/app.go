package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/controller"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/agent/kubelet"
	"github.com/livemigrate/livemigrate/agent/options"
	"github.com/livemigrate/livemigrate/agent/report"
	"github.com/livemigrate/livemigrate/agent/restore"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// Setup adds a further component to the agent's manager. Volume replication
// (agent/replication) plugs in here: cmd/livemigrate-agent passes its Setup
// to Run.
type Setup func(mgr ctrl.Manager, o *options.Options) error

// Scheme holds the types the agent reads and writes.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := agentv1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// RestConfig loads the member cluster's configuration.
func RestConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

// NewFreezer builds the freezer the options ask for.
func NewFreezer(o *options.Options) (*freezer.Freezer, error) {
	var f *freezer.Freezer
	switch o.CgroupVersion {
	case "v1":
		f = &freezer.Freezer{Version: freezer.V1, Mount: filepath.Join(o.CgroupRoot, "freezer")}
	case "v2":
		m := o.CgroupRoot
		if _, err := os.Stat(filepath.Join(m, "cgroup.controllers")); err != nil {
			m = filepath.Join(o.CgroupRoot, "unified")
		}
		f = &freezer.Freezer{Version: freezer.V2, Mount: m}
	default:
		var err error
		if f, err = freezer.Detect(o.CgroupRoot); err != nil {
			return nil, err
		}
	}
	f.Parent = o.CgroupParent
	if o.CgroupDriver != "" {
		f.Drivers = []freezer.Driver{freezer.Driver(o.CgroupDriver)}
	}
	return f, nil
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, o *options.Options, extra ...Setup) error {
	log := klog.FromContext(ctx)
	if err := o.Validate(); err != nil {
		return err
	}
	cfg, err := RestConfig(o.Kubeconfig)
	if err != nil {
		return fmt.Errorf("member cluster config: %w", err)
	}
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	mode := options.Mode(o.Mode)
	runNode := mode == options.ModeNode || mode == options.ModeAll
	runRestore := mode == options.ModeRestore || mode == options.ModeAll

	byObject := map[client.Object]cache.ByObject{}
	switch mode {
	case options.ModeNode:
		byObject[&corev1.Pod{}] = cache.ByObject{Field: fields.OneTermEqualSelector("spec.nodeName", o.NodeName)}
		byObject[&agentv1alpha1.PodCheckpoint{}] = cache.ByObject{Field: fields.OneTermEqualSelector("spec.nodeName", o.NodeName)}
		byObject[&agentv1alpha1.VolumeReplication{}] = cache.ByObject{Field: fields.OneTermEqualSelector("spec.nodeName", o.NodeName)}
	case options.ModeRestore:
		req, err := labels.NewRequirement(agentv1alpha1.LabelRestoredFrom, selection.Exists, nil)
		if err != nil {
			return err
		}
		byObject[&corev1.Pod{}] = cache.ByObject{Label: labels.NewSelector().Add(*req)}
	}

	mgrOpts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress: o.HealthProbeBindAddress,
		Cache:                  cache.Options{ByObject: byObject},
		// Secrets and Nodes are read one at a time; never cache (and
		// watch) them cluster-wide.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}, &corev1.Node{}}}},
	}
	if runRestore {
		mgrOpts.WebhookServer = webhook.NewServer(webhook.Options{Port: o.WebhookPort, CertDir: o.WebhookCertDir, Host: o.WebhookHost})
		mgrOpts.LeaderElection = o.LeaderElect && mode == options.ModeRestore
		mgrOpts.LeaderElectionID = "livemigrate-agent-restore"
		mgrOpts.LeaderElectionNamespace = o.LeaderElectionNamespace
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	controller.RegisterMetrics()

	if runNode {
		fr, err := NewFreezer(o)
		if err != nil {
			return err
		}
		kc, err := kubelet.New(kubelet.Config{
			Port: o.KubeletDefaultPort, CAFile: o.KubeletCAFile, InsecureSkipVerify: o.KubeletInsecureSkipVerify,
			TokenFile: o.KubeletTokenFile, Grace: o.CheckpointTimeoutGrace,
		})
		if err != nil {
			return err
		}
		if err := os.MkdirAll(o.CheckpointDir, 0o700); err != nil {
			return fmt.Errorf("checkpoint dir: %w", err)
		}
		r := &controller.PodCheckpointReconciler{
			Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("livemigrate-agent"), Clock: clock.RealClock{},
			NodeName: o.NodeName, KubeletHost: o.KubeletAddress, KubeletPort: o.KubeletPort,
			CheckpointDir: o.CheckpointDir, FreezeTimeout: o.FreezeTimeout, InsecureRegistries: o.InsecureRegistries,
			Limits:  archive.Limits{MaxMemberBytes: o.ArchiveMaxMemberBytes, MaxTotalBytes: o.ArchiveMaxBytes, MaxEntries: 1 << 20},
			Freezer: fr, Checkpointer: kc, Inspect: archive.Inspect, Push: checkpointimage.PushArchive,
		}
		if err := r.SetupWithManager(mgr); err != nil {
			return err
		}
		log.Info("Checkpoint agent enabled", "node", o.NodeName, "cgroupMount", fr.Mount, "cgroupVersion", int(fr.Version))
		if o.ReportNamespace != "" {
			rep := &report.Reporter{
				Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Clock: clock.RealClock{},
				Node: o.NodeName, Namespace: o.ReportNamespace, Interval: o.ReportInterval, Freezer: fmt.Sprintf("v%d", int(fr.Version)),
				CheckpointAPI: report.ProbeCheckpointAPI(kc, o.KubeletAddress, o.KubeletPort, o.ReportNamespace),
			}
			if o.CRIU != "" {
				rep.CRIU = report.ProbeCRIU(o.CRIU)
			}
			if len(o.ProbeRegistries) > 0 {
				rep.Registries = report.ProbeRegistries(&http.Client{Transport: http.DefaultTransport}, o.ProbeRegistries, o.InsecureRegistries)
			}
			if err := mgr.Add(rep); err != nil {
				return err
			}
		}
	}
	if runRestore {
		restore.RegisterMetrics()
		wh := &restore.Webhook{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Clock: clock.RealClock{}}
		mgr.GetWebhookServer().Register(restore.Path, wh.Handler())
		r := &controller.PodRestoreReconciler{
			Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("livemigrate-restore"), Clock: clock.RealClock{},
			ClaimTTL: o.ClaimTTL,
		}
		if err := r.SetupWithManager(mgr); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
		log.Info("Restore webhook enabled", "port", o.WebhookPort, "path", restore.Path)
	}
	for _, s := range extra {
		if err := s(mgr, o); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	start := time.Now()
	log.Info("Starting livemigrate-agent", "mode", o.Mode)
	defer func() { log.Info("Stopped livemigrate-agent", "uptime", time.Since(start)) }()
	return mgr.Start(ctx)
}
