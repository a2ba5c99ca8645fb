package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// releaseFlags are the flags of install, upgrade and uninstall: the
// cluster (a kubeconfig), the release and, but for uninstall, the chart and
// its values.
type releaseFlags struct {
	fs                             *flag.FlagSet
	kubeconfig, namespace, release *string
	chartDir                       *string
	timeout                        *time.Duration
	sets, files                    stringList
	reuseValues, createNamespace   *bool
}

func newReleaseFlags(name string) *releaseFlags {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	f := &releaseFlags{
		fs:              fs,
		kubeconfig:      fs.String("kubeconfig", "", "kubeconfig of the cluster (required)"),
		namespace:       fs.String("namespace", "default", "release namespace"),
		release:         fs.String("release", "livemigrate", "release name"),
		chartDir:        fs.String("chart", "charts/livemigrate", "chart directory"),
		timeout:         fs.Duration("timeout", 2*time.Minute, "how long one Kubernetes operation may take"),
		reuseValues:     fs.Bool("reuse-values", false, "upgrade: merge --set over the release's last values"),
		createNamespace: fs.Bool("create-namespace", false, "install: create the release namespace when missing"),
	}
	fs.Var(&f.sets, "set", "a value, key=value (repeatable)")
	fs.Var(&f.files, "values", "a values file (repeatable)")
	return f
}

// config is Helm's action configuration for the cluster of --kubeconfig,
// with the Secret storage driver (helm's default).
func (f *releaseFlags) config() (*action.Configuration, error) {
	if *f.kubeconfig == "" {
		return nil, fmt.Errorf("--kubeconfig is required: the kubeconfig of the cluster to install into")
	}
	getter := genericclioptions.NewConfigFlags(false)
	getter.KubeConfig = f.kubeconfig
	getter.Namespace = f.namespace
	cfg := &action.Configuration{}
	if err := cfg.Init(getter, *f.namespace, "secret", func(format string, v ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", v...)
	}); err != nil {
		return nil, fmt.Errorf("helm configuration for %s: %w", *f.kubeconfig, err)
	}
	return cfg, nil
}

func (f *releaseFlags) values() (map[string]any, error) {
	vals, err := (&values.Options{Values: f.sets, ValueFiles: f.files}).MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("reading values: %w", err)
	}
	return vals, nil
}

// loadRelease parses a release subcommand's flags and loads what install
// and upgrade both need: the cluster's configuration, the chart and the
// merged values.
func loadRelease(name string, args []string) (*releaseFlags, *action.Configuration, *chart.Chart, map[string]any, error) {
	f := newReleaseFlags(name)
	if err := f.fs.Parse(args); err != nil {
		return nil, nil, nil, nil, err
	}
	cfg, err := f.config()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	chrt, err := loader.Load(*f.chartDir)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("loading the chart %s: %w", *f.chartDir, err)
	}
	vals, err := f.values()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return f, cfg, chrt, vals, nil
}

// installRelease is `helm install`: the objects are created in the
// cluster (the chart's lookup of the webhook CA reads the cluster).
func installRelease(args []string) error {
	f, cfg, chrt, vals, err := loadRelease("install", args)
	if err != nil {
		return err
	}
	install := action.NewInstall(cfg)
	install.ReleaseName = *f.release
	install.Namespace = *f.namespace
	install.CreateNamespace = *f.createNamespace
	install.Timeout = *f.timeout
	rel, err := install.RunWithContext(context.Background(), chrt, vals)
	if err != nil {
		return fmt.Errorf("installing %s in %s: %w", *f.release, *f.namespace, err)
	}
	fmt.Printf("release %s installed in %s, revision %d, %s\n", rel.Name, rel.Namespace, rel.Version, rel.Info.Status)
	return nil
}

// upgradeRelease is `helm upgrade`.
func upgradeRelease(args []string) error {
	f, cfg, chrt, vals, err := loadRelease("upgrade", args)
	if err != nil {
		return err
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = *f.namespace
	upgrade.ReuseValues = *f.reuseValues
	upgrade.Timeout = *f.timeout
	rel, err := upgrade.RunWithContext(context.Background(), *f.release, chrt, vals)
	if err != nil {
		return fmt.Errorf("upgrading %s in %s: %w", *f.release, *f.namespace, err)
	}
	fmt.Printf("release %s upgraded in %s, revision %d, %s\n", rel.Name, rel.Namespace, rel.Version, rel.Info.Status)
	return nil
}

// uninstallRelease is `helm uninstall`; it prints what Helm kept.
func uninstallRelease(args []string) error {
	f := newReleaseFlags("uninstall")
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	uninstall := action.NewUninstall(cfg)
	uninstall.Timeout = *f.timeout
	res, err := uninstall.Run(*f.release)
	if err != nil {
		return fmt.Errorf("uninstalling %s in %s: %w", *f.release, *f.namespace, err)
	}
	fmt.Printf("release %s uninstalled from %s\n", *f.release, *f.namespace)
	if res != nil && res.Info != "" {
		fmt.Println(res.Info)
	}
	return nil
}
