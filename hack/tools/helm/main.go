// Command chartrender renders the project's Helm chart with the Helm Go SDK,
// exactly as `helm template` would, and generates the chart's README from
// the comments of its values.yaml. It lives in its own module so that the
// Helm SDK's dependencies never enter the main module.
//
//	chartrender render --chart charts/livemigrate --namespace livemigrate-system --set installMode=member [--values f.yaml]
//	chartrender readme --chart charts/livemigrate [--check]
//	chartrender install|upgrade --kubeconfig K --namespace NS [--release livemigrate] --chart charts/livemigrate --set installMode=member
//	chartrender uninstall --kubeconfig K --namespace NS [--release livemigrate]
//
// install, upgrade and uninstall are helm's, against the cluster of the
// kubeconfig (the Secret storage driver, as helm's default).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: chartrender render|readme|install|upgrade|uninstall [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "render":
		err = render(os.Args[2:])
	case "readme":
		err = readme(os.Args[2:])
	case "install":
		err = installRelease(os.Args[2:])
	case "upgrade":
		err = upgradeRelease(os.Args[2:])
	case "uninstall":
		err = uninstallRelease(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: write render, readme, install, upgrade or uninstall", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chartrender:", err)
		os.Exit(1)
	}
}

func render(args []string) error {
	fs := flag.NewFlagSet("render", flag.ExitOnError)
	chartDir := fs.String("chart", "charts/livemigrate", "chart directory")
	namespace := fs.String("namespace", "default", "release namespace")
	release := fs.String("release", "livemigrate", "release name")
	kubeVersion := fs.String("kube-version", "v1.35.4", "Kubernetes version the chart is rendered for")
	var sets, files stringList
	fs.Var(&sets, "set", "a value, key=value (repeatable)")
	fs.Var(&files, "values", "a values file (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	chrt, err := loader.Load(*chartDir)
	if err != nil {
		return fmt.Errorf("loading the chart %s: %w", *chartDir, err)
	}
	vals, err := (&values.Options{Values: sets, ValueFiles: files}).MergeValues(getter.Providers{})
	if err != nil {
		return fmt.Errorf("reading values: %w", err)
	}
	kv, err := chartutil.ParseKubeVersion(*kubeVersion)
	if err != nil {
		return fmt.Errorf("--kube-version: %w", err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun = true
	install.ClientOnly = true
	install.ReleaseName = *release
	install.Namespace = *namespace
	install.KubeVersion = kv
	install.DisableHooks = false
	install.IncludeCRDs = true
	rel, err := install.Run(chrt, vals)
	if err != nil {
		return fmt.Errorf("rendering %s: %w", *chartDir, err)
	}
	var out bytes.Buffer
	out.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

func readme(args []string) error {
	fs := flag.NewFlagSet("readme", flag.ExitOnError)
	chartDir := fs.String("chart", "charts/livemigrate", "chart directory")
	check := fs.Bool("check", false, "fail when README.md is not what would be generated, instead of writing it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	valuesYAML, err := os.ReadFile(filepath.Join(*chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	chrt, err := loader.Load(*chartDir)
	if err != nil {
		return fmt.Errorf("loading the chart %s: %w", *chartDir, err)
	}
	entries, err := parseValues(valuesYAML)
	if err != nil {
		return err
	}
	var undocumented []string
	for _, e := range entries {
		if e.Description == "" {
			undocumented = append(undocumented, e.Key)
		}
	}
	if len(undocumented) > 0 {
		return fmt.Errorf("values without a '# --' comment in values.yaml: %s", strings.Join(undocumented, ", "))
	}
	intro, err := os.ReadFile(filepath.Join(*chartDir, "README.intro.md"))
	if err != nil {
		return err
	}
	doc := generateReadme(chrt.Metadata.Name, chrt.Metadata.Version, chrt.Metadata.AppVersion, string(intro), entries)
	path := filepath.Join(*chartDir, "README.md")
	if *check {
		have, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Equal(have, []byte(doc)) {
			return errors.New(path + " is stale: run `make chart-readme` and commit it")
		}
		return nil
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}
