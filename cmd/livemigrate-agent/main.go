// Command livemigrate-agent is the per-node checkpoint agent (DaemonSet,
// --mode=node) and the restore webhook (Deployment, --mode=restore) of
// livemigrate. See agent/options for its flags (--help).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/livemigrate/livemigrate/agent/app"
	"github.com/livemigrate/livemigrate/agent/options"
	"github.com/livemigrate/livemigrate/agent/replication"
)

func main() {
	o := options.New()
	ro := replication.NewOptions()
	fs := app.NewFlagSet(o, ro, flag.CommandLine)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "livemigrate-agent freezes, checkpoints and restores pods for live migration.\n\nUsage: livemigrate-agent [flags]\n\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	ro.NodeName = o.NodeName
	if options.Mode(o.Mode) == options.ModeRestore {
		ro.Enabled = false
	}
	if err := errors.Join(o.Validate(), ro.Validate()); err != nil {
		fmt.Fprintln(os.Stderr, "invalid flags:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(klog.NewKlogr())
	ctx := ctrl.SetupSignalHandler()
	// Volume replication (agent/replication) is a further component.
	if err := app.Run(ctx, o, func(mgr ctrl.Manager, _ *options.Options) error { return replication.Setup(mgr, ro) }); err != nil {
		klog.FromContext(ctx).Error(err, "livemigrate-agent failed")
		os.Exit(1)
	}
}
