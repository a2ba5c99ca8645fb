package kubectl

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/maintenance"
	"github.com/livemigrate/livemigrate/descheduler/migration"
	"github.com/livemigrate/livemigrate/descheduler/placement"
	"github.com/livemigrate/livemigrate/plugins/capacity"
	pluginconfig "github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/plugins/latency"
)

type planFlags struct {
	to              string
	bandwidth       string
	checkpointSize  string
	schedulerConfig string
	rebalance       rebalanceFlags
}

// PlanResult is what `plan` prints.
type PlanResult struct {
	Workload          lmv1alpha1.WorkloadReference
	Source            string
	Plan              *placement.Plan
	CheckpointBytes   int64
	Bandwidth         int64
	ExpectedDowntime  time.Duration
	DowntimeEstimated bool
	// RestoreOverhead is the dump, pull and restore time in
	// ExpectedDowntime, learned from LearnedFrom earlier migrations into
	// the target (migration.LearnedOverhead; 0 without any).
	RestoreOverhead time.Duration
	LearnedFrom     int
}

func newPlanCommand(o *Options) *cobra.Command {
	f := &planFlags{}
	cmd := &cobra.Command{
		Use:   "plan <kind>/<name> | plan --rebalance",
		Short: "Show where a workload would move, every cluster's scores, the expected downtime and why not elsewhere; or, with --rebalance, what the next load rebalancing round would do and why (changes nothing)",
		Args: func(cmd *cobra.Command, args []string) error {
			if f.rebalance.on {
				return exactArgs(0)(cmd, args)
			}
			return exactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.rebalance.on {
				return f.planRebalance(cmd.Context(), o)
			}
			ref, err := ParseWorkload(args[0])
			if err != nil {
				return err
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			res, err := f.plan(cmd.Context(), c, ns, ref)
			if err != nil {
				return err
			}
			PrintPlan(o.Out, res)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.to, "to", "", "Evaluate this target instead of the best-scored one.")
	cmd.Flags().StringVar(&f.bandwidth, "bandwidth", "100Mi", "Bytes per second assumed between the clusters for the downtime estimate.")
	cmd.Flags().StringVar(&f.checkpointSize, "checkpoint-size", "256Mi", "Checkpoint size assumed per replica when the workload declares no memory request.")
	cmd.Flags().StringVar(&f.schedulerConfig, "scheduler-config", "", "Scheduler plugins configuration file (Capacity, Latency); defaults when empty.")
	f.rebalance.addFlags(cmd)
	return cmd
}

func (f *planFlags) plan(ctx context.Context, c client.Client, ns string, ref lmv1alpha1.WorkloadReference) (*PlanResult, error) {
	bw, err := parseQuantity(f.bandwidth)
	if err != nil {
		return nil, fmt.Errorf("--bandwidth: %w", err)
	}
	perReplica, err := parseQuantity(f.checkpointSize)
	if err != nil {
		return nil, fmt.Errorf("--checkpoint-size: %w", err)
	}
	rb := &workv1alpha2.ResourceBinding{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: migration.BindingName(ref)}, rb); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%s %s/%s is not propagated by Karmada (no ResourceBinding %s): create a PropagationPolicy for it first",
				ref.Kind, ns, ref.Name, migration.BindingName(ref))
		}
		return nil, fmt.Errorf("reading the ResourceBinding: %w", err)
	}
	if len(rb.Spec.Clusters) != 1 {
		return nil, fmt.Errorf("%s %s runs on %d clusters: live migration moves a workload placed on exactly one cluster", ref.Kind, ref.Name, len(rb.Spec.Clusters))
	}
	source := rb.Spec.Clusters[0].Name

	plugins, err := f.plugins(ctx, c)
	if err != nil {
		return nil, err
	}
	var list clusterv1alpha1.ClusterList
	if err := c.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing member clusters: %w", err)
	}
	clusters := make([]*clusterv1alpha1.Cluster, 0, len(list.Items))
	for i := range list.Items {
		clusters = append(clusters, &list.Items[i])
	}
	plan := placement.Score(ctx, plugins, &rb.Spec, &rb.Status, clusters, source)
	if f.to != "" {
		found := false
		for _, cand := range plan.Candidates {
			if cand.Cluster == f.to {
				found = true
				if !cand.Feasible {
					return nil, fmt.Errorf("cannot move to %s: %s", f.to, strings.Join(cand.Reasons, "; "))
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("%q is not a member cluster: see kubectl get clusters", f.to)
		}
		plan.Target = f.to
	}

	replicas := int64(rb.Spec.Replicas)
	if replicas == 0 {
		replicas = 1
	}
	size := perReplica.Value()
	if rr := rb.Spec.ReplicaRequirements; rr != nil {
		if m, ok := rr.ResourceRequest["memory"]; ok && !m.IsZero() {
			size = m.Value()
		}
	}
	res := &PlanResult{Workload: ref, Source: source, Plan: plan, CheckpointBytes: size * replicas, Bandwidth: bw.Value()}
	res.ExpectedDowntime = migration.EstimateDowntime(0, res.CheckpointBytes, res.Bandwidth)
	var past lmv1alpha1.LiveMigrationList
	if err := c.List(ctx, &past); err == nil {
		res.RestoreOverhead, res.LearnedFrom = migration.LearnedOverhead(past.Items, plan.Target, res.CheckpointBytes, migration.DefaultDowntimeHistory)
		res.ExpectedDowntime += res.RestoreOverhead
	}
	res.DowntimeEstimated = true
	return res, nil
}

// plugins builds the target filters and the Capacity and Latency plugins
// as the controller does (the maintenance filter with the default taint
// key), with the ClusterLatency measurements read once.
func (f *planFlags) plugins(ctx context.Context, c client.Client) ([]framework.Plugin, error) {
	cfg, err := pluginconfig.Load(f.schedulerConfig)
	if err != nil {
		return nil, err
	}
	cp, err := capacity.New(cfg.Capacity)
	if err != nil {
		return nil, err
	}
	store := latency.NewStore(*cfg.Latency.Percentile)
	var lats lmv1alpha1.ClusterLatencyList
	if err := c.List(ctx, &lats); err == nil {
		for i := range lats.Items {
			store.Update(&lats.Items[i])
		}
	}
	getters := placement.ReaderGetters{Reader: c}
	lp, err := latency.New(cfg.Latency, latency.Handle{Store: store, Templates: getters, Policies: getters})
	if err != nil {
		return nil, err
	}
	filters := append(placement.SchedulerFilters(), &maintenance.Filter{Keys: []string{maintenance.DefaultTaintKey}})
	return append(filters, cp, lp), nil
}

// PrintPlan renders a plan.
func PrintPlan(out io.Writer, r *PlanResult) {
	fmt.Fprintf(out, "Workload:  %s %s on %s\n", r.Workload.Kind, r.Workload.Name, r.Source)
	if r.Plan.Target == "" {
		fmt.Fprintln(out, "Target:    none: no member cluster can take the workload (see below)")
	} else {
		fmt.Fprintf(out, "Target:    %s\n", r.Plan.Target)
	}
	restore := "dump, pull and restore not included: no earlier migration into the target to learn them from"
	if r.LearnedFrom > 0 {
		restore = fmt.Sprintf("+ %s dump, pull and restore, learned from %d earlier migrations into %s", r.RestoreOverhead.Round(time.Millisecond), r.LearnedFrom, r.Plan.Target)
	}
	fmt.Fprintf(out, "Downtime:  ~%s expected (checkpoint ~%s at %s/s %s; the final volume delta adds to it and is measured during pre-copy)\n",
		r.ExpectedDowntime.Round(time.Millisecond), FormatBytes(r.CheckpointBytes), FormatBytes(r.Bandwidth), restore)
	var names []string
	seen := map[string]bool{}
	for _, c := range r.Plan.Candidates {
		for n := range c.Scores {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	fmt.Fprintf(out, "\n%-16s %-9s %6s", "CLUSTER", "FEASIBLE", "SCORE")
	for _, n := range names {
		fmt.Fprintf(out, " %9s", strings.ToUpper(n))
	}
	fmt.Fprintln(out, "  WHY NOT")
	for _, c := range r.Plan.Candidates {
		feasible := "no"
		if c.Feasible {
			feasible = "yes"
		}
		score := "-"
		if c.Feasible {
			score = fmt.Sprint(c.Score)
		}
		fmt.Fprintf(out, "%-16s %-9s %6s", c.Cluster, feasible, score)
		for _, n := range names {
			if v, ok := c.Scores[n]; ok {
				fmt.Fprintf(out, " %9d", v)
			} else {
				fmt.Fprintf(out, " %9s", "-")
			}
		}
		why := strings.Join(c.Reasons, "; ")
		if c.Cluster == r.Plan.Target {
			why = "(chosen)"
		}
		fmt.Fprintf(out, "  %s\n", why)
	}
}
