// Package app builds the livemigrate-scheduler command: Karmada's own
// scheduler command with the Capacity and Latency plugins registered and
// the --livemigrate-config flag added. Every stock karmada-scheduler flag
// keeps its meaning.
package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/term"

	karmadaapp "github.com/karmada-io/karmada/cmd/scheduler/app"

	"github.com/livemigrate/livemigrate/cmd/livemigrate-scheduler/app/options"
	"github.com/livemigrate/livemigrate/plugins/capacity"
	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/plugins/latency"
)

const flagSetName = "livemigrate"

// NewSchedulerCommand returns the livemigrate-scheduler command.
func NewSchedulerCommand(ctx context.Context) *cobra.Command {
	opts := options.NewOptions()
	rt := &pluginRuntime{ctx: ctx}
	cmd := karmadaapp.NewSchedulerCommand(ctx,
		karmadaapp.WithPlugin(capacity.Name, rt.newCapacity),
		karmadaapp.WithPlugin(latency.Name, rt.newLatency),
	)
	cmd.Use = "livemigrate-scheduler"
	cmd.Long = `livemigrate-scheduler is karmada-scheduler with the livemigrate plugins built in:
Capacity (filters clusters that cannot fit a binding's replicas, scores headroom)
and Latency (scores, and with a max filters, by measured RTT to what a workload
declares it must be close to). Every karmada-scheduler flag works as in
karmada-scheduler; the plugins are enabled by --plugins (the default '*' enables
them along with the built-in ones) and configured by --livemigrate-config.

` + cmd.Long

	fss := cliflag.NamedFlagSets{}
	opts.AddFlags(fss.FlagSet(flagSetName))
	cmd.Flags().AddFlagSet(fss.FlagSet(flagSetName))
	rt.flags = cmd.Flags()

	stockRunE := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if errs := opts.Validate(); len(errs) > 0 {
			return errs.ToAggregate()
		}
		cfg, err := config.Load(opts.ConfigFile)
		if err != nil {
			return err
		}
		rt.cfg = cfg
		return stockRunE(c, args)
	}

	stockHelp, stockUsage := cmd.HelpFunc(), cmd.UsageFunc()
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		stockHelp(c, args)
		printSection(c, fss, false)
	})
	cmd.SetUsageFunc(func(c *cobra.Command) error {
		err := stockUsage(c)
		printSection(c, fss, true)
		return err
	})
	return cmd
}

func printSection(c *cobra.Command, fss cliflag.NamedFlagSets, stderr bool) {
	out := c.OutOrStdout()
	if stderr {
		out = c.OutOrStderr()
	}
	cols, _, _ := term.TerminalSize(out)
	cliflag.PrintSections(out, fss, cols)
	fmt.Fprintln(out, "Plugins: "+capacity.Name+", "+latency.Name+" (enabled by --plugins=* or by name, e.g. --plugins=*,-"+latency.Name+")")
}
