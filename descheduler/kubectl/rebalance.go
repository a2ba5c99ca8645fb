package kubectl

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/livemigrate/livemigrate/descheduler/options"
	"github.com/livemigrate/livemigrate/descheduler/rebalance"
)

// rebalanceFlags are plan --rebalance's: the descheduler's rebalancing
// flags, with its defaults (give the values the descheduler runs with).
type rebalanceFlags struct {
	on   bool
	opts *options.Options
}

func (f *rebalanceFlags) addFlags(cmd *cobra.Command) {
	f.opts = options.New()
	fs := cmd.Flags()
	fs.BoolVar(&f.on, "rebalance", false, "Print what the next load rebalancing round would do and why: each cluster's utilization and band, and per candidate its benefit, cost, and chosen or why not. Give the --rebalance-* and --max-active-* values the descheduler runs with.")
	fs.IntVar(&f.opts.RebalanceHigh, "rebalance-high", f.opts.RebalanceHigh, "With --rebalance: the descheduler's --rebalance-high (percent).")
	fs.IntVar(&f.opts.RebalanceLow, "rebalance-low", f.opts.RebalanceLow, "With --rebalance: the descheduler's --rebalance-low (percent).")
	fs.DurationVar(&f.opts.RebalanceCooldown, "rebalance-cooldown", f.opts.RebalanceCooldown, "With --rebalance: the descheduler's --rebalance-cooldown.")
	fs.IntVar(&f.opts.RebalanceMaxMovesPerRound, "rebalance-max-moves-per-round", f.opts.RebalanceMaxMovesPerRound, "With --rebalance: the descheduler's --rebalance-max-moves-per-round.")
	fs.IntVar(&f.opts.MaxActive, "max-active-migrations", f.opts.MaxActive, "With --rebalance: the descheduler's --max-active-migrations.")
	fs.IntVar(&f.opts.MaxActivePerCluster, "max-active-migrations-per-cluster", f.opts.MaxActivePerCluster, "With --rebalance: the descheduler's --max-active-migrations-per-cluster.")
	fs.DurationVar(&f.opts.DefaultDowntimeBudget, "default-downtime-budget", f.opts.DefaultDowntimeBudget, "With --rebalance: the descheduler's --default-downtime-budget.")
}

func (f *planFlags) planRebalance(ctx context.Context, o *Options) error {
	ro := f.rebalance.opts
	bw, err := parseQuantity(f.bandwidth)
	if err != nil {
		return fmt.Errorf("--bandwidth: %w", err)
	}
	perReplica, err := parseQuantity(f.checkpointSize)
	if err != nil {
		return fmt.Errorf("--checkpoint-size: %w", err)
	}
	ro.DefaultBandwidth, ro.DefaultCheckpointEstimate = bw, perReplica
	ro.RebalanceMode, ro.RebalanceInterval = options.RebalanceDryRun, 0
	if errs := ro.Validate(); len(errs) > 0 {
		for _, e := range errs {
			if strings.HasPrefix(e.Field, "flags.rebalance-") || strings.HasPrefix(e.Field, "flags.max-active") || e.Field == "flags.default-downtime-budget" {
				return fmt.Errorf("--%s: %s", strings.TrimPrefix(e.Field, "flags."), e.ErrorBody())
			}
		}
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	plugins, err := f.plugins(ctx, c)
	if err != nil {
		return err
	}
	p := rebalance.NewPlanner(ro, c, plugins)
	_, plan, err := p.Plan(ctx, time.Now(), nil)
	if err != nil {
		return err
	}
	PrintRebalancePlan(o.Out, p.Config, plan)
	return nil
}

// PrintRebalancePlan renders a rebalancing round.
func PrintRebalancePlan(out io.Writer, cfg rebalance.Config, plan *rebalance.Plan) {
	fmt.Fprintf(out, "Bands: high %s (a cluster above it on any resource is a source), low %s (below it on every resource: a receiver)\n\n",
		rebalance.Percent(cfg.Bands.High), rebalance.Percent(cfg.Bands.Low))
	fmt.Fprintf(out, "%-16s %-9s %7s %7s %7s\n", "CLUSTER", "CLASS", "CPU", "MEMORY", "PODS")
	for _, c := range plan.Clusters {
		fmt.Fprintf(out, "%-16s %-9s %7s %7s %7s\n", c.Name, c.Class,
			rebalance.Percent(c.Utilization[0]), rebalance.Percent(c.Utilization[1]), rebalance.Percent(c.Utilization[2]))
	}
	fmt.Fprintln(out)
	if plan.Idle != "" {
		fmt.Fprintf(out, "Nothing to do: %s\n", plan.Idle)
		return
	}
	fmt.Fprintf(out, "%d candidate(s), %d move(s) chosen (at most %d per round)\n\n", len(plan.Decisions), len(plan.Chosen()), cfg.MaxMoves)
	fmt.Fprintf(out, "%-36s %-12s %-12s %8s %10s %9s %8s  %s\n", "WORKLOAD", "SOURCE", "TARGET", "BENEFIT", "DOWNTIME", "BYTES", "COST", "DECISION")
	for _, d := range plan.Decisions {
		w := d.Workload
		target, benefit, downtime, bytes, cost := "-", "-", "-", "-", "-"
		if d.Target != "" {
			target = d.Target
		}
		if d.Benefit > 0 {
			benefit = fmt.Sprintf("%.1f", d.Benefit*100)
			downtime = d.Downtime.Round(10 * time.Millisecond).String()
			bytes = FormatBytes(d.Bytes)
			cost = fmt.Sprintf("%.1fs", d.Cost)
		}
		decision := string(d.Outcome) + ": " + d.Reason
		if d.Outcome == rebalance.OutcomeChosen {
			decision = "chosen: " + d.Reason
		}
		fmt.Fprintf(out, "%-36s %-12s %-12s %8s %10s %9s %8s  %s\n", strings.ToLower(w.Kind)+"/"+w.Namespace+"/"+w.Name,
			d.Source, target, benefit, downtime, bytes, cost, decision)
	}
}
