package prober

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/logs"
	logsv1 "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/livemigrate/livemigrate/plugins/latency/prober/options"
)

// Version is reported in ClusterLatency status.proberVersion.
var Version = "v0.1.0"

// NewCommand returns the livemigrate-prober command.
func NewCommand(ctx context.Context) *cobra.Command {
	opts := options.NewOptions()
	logConfig := logsv1.NewLoggingConfiguration()
	cmd := &cobra.Command{
		Use:   "livemigrate-prober",
		Short: "Measure RTTs from this member cluster to its peers and origins and publish them as a ClusterLatency",
		Long: `livemigrate-prober runs once per member cluster. It serves a TCP echo endpoint
(--listen-address) that its peers probe, measures round-trip times over one kept
TCP connection per target (a 16-byte payload written and read back; dial time is
never counted) to the peers and origins of its --config file, and every interval
merge-patches the status of the ClusterLatency named after its cluster in the
Karmada control plane (--kubeconfig points at karmada-apiserver).

Configuration file (YAML):

  clusterName: member1            # this cluster's name in Karmada
  listenAddress: 127.0.0.1:7101   # echo endpoint for peers
  peers:                          # other member clusters' echo endpoints
  - {name: member2, address: 127.0.0.1:7202}
  origins:                        # named origins (any TCP echo endpoint)
  - {name: eu-users, address: 127.0.0.1:7301}
  interval: 10s                   # between rounds (default 10s)
  samples: 5                      # samples per target per round (default 5)
  timeout: 2s                     # per sample and per dial (default 2s)`,
		SilenceUsage: true,
		Args:         cobra.NoArgs,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if err := logsv1.ValidateAndApply(logConfig, nil); err != nil {
				return err
			}
			logs.InitLogs()
			return nil
		},
		RunE: func(*cobra.Command, []string) error {
			if errs := opts.Validate(); len(errs) > 0 {
				return errs.ToAggregate()
			}
			return Run(ctx, opts)
		},
	}
	fss := cliflag.NamedFlagSets{}
	opts.AddFlags(fss.FlagSet("prober"))
	logsv1.AddFlags(logConfig, fss.FlagSet("logs"))
	for _, fs := range fss.FlagSets {
		cmd.Flags().AddFlagSet(fs)
	}
	return cmd
}

// Run runs the prober with validated options until ctx is done.
func Run(ctx context.Context, opts *options.Options) error {
	logger := klog.FromContext(ctx)
	if opts.EchoOnly {
		addr := opts.ListenAddress
		if addr == "" {
			cfg, err := LoadConfig(opts.ConfigFile)
			if err != nil {
				return err
			}
			addr = cfg.ListenAddress
		}
		srv, err := ListenEcho(addr)
		if err != nil {
			return fmt.Errorf("listening for echo: %w", err)
		}
		logger.Info("Serving echo only", "address", srv.Addr())
		serveMetrics(ctx, opts.MetricsBindAddress)
		return srv.Serve(ctx)
	}

	cfg, err := loadWithOverrides(opts)
	if err != nil {
		return err
	}
	restConfig, err := clientcmd.BuildConfigFromFlags(opts.Master, opts.KubeConfig)
	if err != nil {
		return fmt.Errorf("building Karmada client config: %w", err)
	}
	restConfig.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(opts.KubeAPIQPS, opts.KubeAPIBurst)
	restConfig.UserAgent = "livemigrate-prober/" + cfg.ClusterName
	client, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	p := New(cfg, &DynamicStatusWriter{Client: client, CreateIfMissing: opts.CreateIfMissing}, Version)
	if opts.Once {
		return p.RunOnce(ctx)
	}

	srv, err := ListenEcho(cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listening for echo: %w", err)
	}
	logger.Info("Starting prober", "cluster", cfg.ClusterName, "echo", srv.Addr(),
		"peers", len(cfg.Peers), "origins", len(cfg.Origins), "interval", cfg.Interval.Duration, "samples", *cfg.Samples)
	serveMetrics(ctx, opts.MetricsBindAddress)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	p.Run(ctx)
	return <-errc
}

func loadWithOverrides(opts *options.Options) (*Config, error) {
	cfg, err := LoadConfig(opts.ConfigFile)
	if err != nil && (opts.ClusterName == "" && opts.ListenAddress == "") {
		return nil, err
	}
	if err != nil {
		// The file may be valid once the flags override it: reload leniently.
		cfg, err = loadUnvalidated(opts.ConfigFile)
		if err != nil {
			return nil, err
		}
	}
	if opts.ClusterName != "" {
		cfg.ClusterName = opts.ClusterName
	}
	if opts.ListenAddress != "" {
		cfg.ListenAddress = opts.ListenAddress
	}
	if errs := Validate(cfg); len(errs) > 0 {
		return nil, fmt.Errorf("invalid prober config %s (with flag overrides): %w", opts.ConfigFile, errs.ToAggregate())
	}
	return cfg, nil
}

func serveMetrics(ctx context.Context, addr string) {
	if addr == "0" {
		return
	}
	RegisterMetrics()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(ctrlmetrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "Metrics server failed", "address", addr)
		}
	}()
}
