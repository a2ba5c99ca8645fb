// Package options holds livemigrate-prober's command-line flags and their
// validation.
package options

import (
	"fmt"
	"net"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Options are livemigrate-prober's flags.
type Options struct {
	// ConfigFile is the prober configuration file (required unless EchoOnly).
	ConfigFile string
	// KubeConfig points at the Karmada control plane (karmada-apiserver),
	// where the cluster's ClusterLatency lives.
	KubeConfig string
	// Master overrides the API server address in KubeConfig.
	Master string
	// ClusterName overrides the configuration file's clusterName.
	ClusterName string
	// ListenAddress overrides the configuration file's listenAddress.
	ListenAddress string
	// MetricsBindAddress serves /metrics and /healthz; "0" disables.
	MetricsBindAddress string
	// CreateIfMissing creates the ClusterLatency when it does not exist.
	CreateIfMissing bool
	// EchoOnly serves only the echo endpoint (for standing in for an origin).
	EchoOnly bool
	// Once runs one probe round, writes it and exits.
	Once bool
	// KubeAPIQPS and KubeAPIBurst rate-limit the Karmada API client.
	KubeAPIQPS   float32
	KubeAPIBurst int
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{MetricsBindAddress: ":8090", KubeAPIQPS: 5, KubeAPIBurst: 10}
}

// AddFlags adds the flags to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ConfigFile, "config", o.ConfigFile,
		"Path to the prober configuration file (YAML: clusterName, listenAddress, peers[{name,address}], origins[{name,address}], interval, samples, timeout). Required unless --echo-only.")
	fs.StringVar(&o.KubeConfig, "kubeconfig", o.KubeConfig,
		"Path to a kubeconfig for the Karmada control plane (karmada-apiserver), whose credentials may get and patch only this cluster's ClusterLatency (and its status).")
	fs.StringVar(&o.Master, "master", o.Master, "The address of the Karmada API server. Overrides any value in --kubeconfig.")
	fs.StringVar(&o.ClusterName, "cluster-name", o.ClusterName, "This member cluster's name in Karmada. Overrides clusterName in --config.")
	fs.StringVar(&o.ListenAddress, "listen-address", o.ListenAddress,
		"host:port of the TCP echo endpoint peers probe. Overrides listenAddress in --config.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress,
		"host:port serving /metrics and /healthz. \"0\" disables it.")
	fs.BoolVar(&o.CreateIfMissing, "create-if-missing", o.CreateIfMissing,
		"Create this cluster's ClusterLatency when it does not exist (needs create permission on clusterlatencies, which RBAC cannot scope to one name).")
	fs.BoolVar(&o.EchoOnly, "echo-only", o.EchoOnly,
		"Serve only the TCP echo endpoint on --listen-address and probe nothing (e.g. to stand in for an origin). Needs no --config or --kubeconfig.")
	fs.BoolVar(&o.Once, "once", o.Once, "Run one probe round, write the status and exit.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "QPS of the Karmada API client.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst of the Karmada API client.")
}

// Validate checks the flags.
func (o *Options) Validate() field.ErrorList {
	var errs field.ErrorList
	if o.EchoOnly {
		if o.ListenAddress == "" && o.ConfigFile == "" {
			errs = append(errs, field.Required(field.NewPath("listen-address"), "--echo-only needs --listen-address (or a --config with listenAddress)"))
		}
		if o.Once {
			errs = append(errs, field.Invalid(field.NewPath("once"), o.Once, "makes no sense with --echo-only"))
		}
	} else if o.ConfigFile == "" {
		errs = append(errs, field.Required(field.NewPath("config"), "the prober configuration file is required"))
	}
	if o.ListenAddress != "" {
		if _, _, err := net.SplitHostPort(o.ListenAddress); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("listen-address"), o.ListenAddress, fmt.Sprintf("want host:port: %v", err)))
		}
	}
	if o.MetricsBindAddress != "0" {
		if _, _, err := net.SplitHostPort(o.MetricsBindAddress); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("metrics-bind-address"), o.MetricsBindAddress, "want host:port or 0"))
		}
	}
	if o.KubeAPIQPS <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("kube-api-qps"), o.KubeAPIQPS, "must be positive"))
	}
	if o.KubeAPIBurst <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("kube-api-burst"), o.KubeAPIBurst, "must be positive"))
	}
	return errs
}
