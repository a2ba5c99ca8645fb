package kubectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/descheduler/maintenance"
)

func newDrainCommand(o *Options) *cobra.Command {
	var (
		wait    bool
		timeout time.Duration
		key     string
		effect  string
	)
	cmd := &cobra.Command{
		Use:   "drain <cluster> [--wait] [--timeout D]",
		Short: "Taint a member cluster for maintenance: the descheduler live-migrates its opted-in workloads elsewhere",
		Long: `Taint a member cluster for maintenance (key livemigrate.io/maintenance, effect NoSchedule by default).

The descheduler then live-migrates every workload bound to it that is opted in
(livemigrate.io/eviction-strategy on the template or its propagation policy);
the others are left to Karmada. With --wait, follow the drain: it exits 0 once
every opted-in workload has left, non-zero with the blocking workloads when
some cannot leave (or at --timeout). Undo with: kubectl livemigrate uncordon.`,
		Example: `  kubectl livemigrate drain member1 --wait --timeout 30m`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eff := corev1.TaintEffect(effect)
			if eff != corev1.TaintEffectNoSchedule && eff != corev1.TaintEffectNoExecute {
				return fmt.Errorf("--effect %q: use NoSchedule (the default) or NoExecute", effect)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			taint, err := taintCluster(ctx, c, args[0], key, eff, o.Clock.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(o.Out, "cluster/%s tainted %s\n", args[0], maintenance.TaintString(taint))
			if !wait {
				fmt.Fprintf(o.Out, "follow it with: kubectl livemigrate drain %s --wait\n", args[0])
				return nil
			}
			if timeout > 0 {
				var cancel func()
				ctx, cancel = contextWithTimeout(ctx, timeout)
				defer cancel()
			}
			return o.waitDrain(ctx, c, args[0], taint)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "Follow the drain until every opted-in workload has left or some cannot.")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "With --wait, give up after this long (the drain goes on).")
	cmd.Flags().StringVar(&key, "key", maintenance.DefaultTaintKey, "Taint key; one of the descheduler's --maintenance-taint-keys.")
	cmd.Flags().StringVar(&effect, "effect", string(corev1.TaintEffectNoSchedule), "Taint effect: NoSchedule, or NoExecute (with Karmada's taint eviction on, Karmada then evicts what does not tolerate it: see docs/triggers.md).")
	return cmd
}

func newUncordonCommand(o *Options) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "uncordon <cluster>",
		Short: "Remove the maintenance taint of a member cluster: no new live migration starts, running ones finish",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			removed, err := untaintCluster(cmd.Context(), c, args[0], key)
			if err != nil {
				return err
			}
			if !removed {
				fmt.Fprintf(o.Out, "cluster/%s has no %s taint\n", args[0], key)
				return nil
			}
			fmt.Fprintf(o.Out, "cluster/%s uncordoned (taint %s removed)\n", args[0], key)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", maintenance.DefaultTaintKey, "Taint key to remove.")
	return cmd
}

// taintCluster adds the maintenance taint (kept as it is when the cluster
// already has one with that key) and returns it.
func taintCluster(ctx context.Context, c client.Client, name, key string, effect corev1.TaintEffect, now time.Time) (*corev1.Taint, error) {
	var out *corev1.Taint
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cl := &clusterv1alpha1.Cluster{}
		if err := c.Get(ctx, types.NamespacedName{Name: name}, cl); err != nil {
			return fmt.Errorf("reading cluster %s (list them with: kubectl get clusters): %w", name, err)
		}
		for i := range cl.Spec.Taints {
			if t := cl.Spec.Taints[i]; t.Key == key && (t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute) {
				out = &t
				return nil
			}
		}
		at := metav1.NewTime(now.Truncate(time.Second))
		t := corev1.Taint{Key: key, Effect: effect, TimeAdded: &at}
		cl.Spec.Taints = append(cl.Spec.Taints, t)
		out = &t
		return c.Update(ctx, cl)
	})
	if err != nil {
		return nil, fmt.Errorf("tainting cluster %s: %w", name, err)
	}
	return out, nil
}

// untaintCluster removes every taint with the key.
func untaintCluster(ctx context.Context, c client.Client, name, key string) (bool, error) {
	removed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cl := &clusterv1alpha1.Cluster{}
		if err := c.Get(ctx, types.NamespacedName{Name: name}, cl); err != nil {
			return fmt.Errorf("reading cluster %s (list them with: kubectl get clusters): %w", name, err)
		}
		kept := cl.Spec.Taints[:0]
		for _, t := range cl.Spec.Taints {
			if t.Key != key {
				kept = append(kept, t)
			}
		}
		if len(kept) == len(cl.Spec.Taints) {
			return nil
		}
		removed = true
		cl.Spec.Taints = kept
		return c.Update(ctx, cl)
	})
	if err != nil {
		return false, fmt.Errorf("uncordoning cluster %s: %w", name, err)
	}
	return removed, nil
}

// DrainRow is one workload of a draining cluster as drain --wait shows it.
type DrainRow struct {
	Workload string
	State    string
	Detail   string
	Stuck    bool
}

// DrainView is what drain --wait knows about a drain.
type DrainView struct {
	// Current is false while the descheduler has not reported on this drain yet.
	Current   bool
	Done      bool
	Remaining int
	Rows      []DrainRow
}

// readDrain combines the descheduler's drain report with the workloads
// bound to the cluster that it does not list (not opted in: left to Karmada).
func readDrain(ctx context.Context, c client.Client, name string, taint *corev1.Taint) (*DrainView, error) {
	cl := &clusterv1alpha1.Cluster{}
	if err := c.Get(ctx, types.NamespacedName{Name: name}, cl); err != nil {
		return nil, fmt.Errorf("reading cluster %s: %w", name, err)
	}
	rep, err := maintenance.ReadReport(cl)
	if err != nil {
		return nil, err
	}
	v := &DrainView{}
	listed := map[string]bool{}
	if rep != nil && rep.Taint == maintenance.TaintString(taint) && (taint.TimeAdded == nil || !rep.Since.Time.Before(taint.TimeAdded.Add(-time.Second))) {
		v.Current, v.Done, v.Remaining = true, rep.Done, rep.Remaining
		for _, w := range rep.Workloads {
			wl := strings.ToLower(w.Kind) + "/" + w.Namespace + "/" + w.Name
			listed[wl] = true
			detail := w.Reason
			if w.LiveMigration != "" {
				detail = strings.TrimSpace("livemigration " + w.LiveMigration + " " + detail)
			}
			v.Rows = append(v.Rows, DrainRow{Workload: wl, State: stateText(w.State), Detail: detail, Stuck: w.State.Stuck()})
		}
	}
	var bindings workv1alpha2.ResourceBindingList
	if err := c.List(ctx, &bindings); err != nil {
		return nil, fmt.Errorf("listing ResourceBindings: %w", err)
	}
	for i := range bindings.Items {
		rb := &bindings.Items[i]
		ref := rb.Spec.Resource
		wl := strings.ToLower(ref.Kind) + "/" + rb.Namespace + "/" + ref.Name
		if listed[wl] || !rb.Spec.TargetContains(name) || (ref.Kind != "Deployment" && ref.Kind != "StatefulSet") {
			continue
		}
		row := DrainRow{Workload: wl, State: "not opted in", Detail: "left to Karmada"}
		if !v.Current {
			row.State, row.Detail = "pending", "waiting for the descheduler's report"
		}
		v.Rows = append(v.Rows, row)
	}
	sort.SliceStable(v.Rows, func(i, j int) bool { return v.Rows[i].Workload < v.Rows[j].Workload })
	return v, nil
}

func stateText(s maintenance.State) string {
	switch s {
	case maintenance.StateWaiting:
		return "waiting for budget"
	case maintenance.StateMigrating:
		return "migrating"
	case maintenance.StateMoved:
		return "moved"
	case maintenance.StateEvicting:
		return "evicted by Karmada"
	case maintenance.StateBlocked:
		return "blocked"
	case maintenance.StateNotHandled:
		return "not handled"
	case maintenance.StateInvalidPolicy:
		return "invalid policy"
	}
	return string(s)
}

// PrintDrain prints a drain view as a table.
func PrintDrain(out io.Writer, v *DrainView) {
	fmt.Fprintf(out, "%-40s %-20s %s\n", "WORKLOAD", "STATE", "DETAIL")
	for _, r := range v.Rows {
		fmt.Fprintf(out, "%-40s %-20s %s\n", r.Workload, r.State, r.Detail)
	}
}

func (v *DrainView) stuck() []DrainRow {
	var out []DrainRow
	for _, r := range v.Rows {
		if r.Stuck {
			out = append(out, r)
		}
	}
	return out
}

// waitDrain follows a drain until it is done (nil), or some workloads
// cannot leave, or ctx ends (an error listing what is left).
func (o *Options) waitDrain(ctx context.Context, c client.Client, name string, taint *corev1.Taint) error {
	last := ""
	for {
		v, err := readDrain(ctx, c, name, taint)
		if err != nil {
			return err
		}
		var b strings.Builder
		PrintDrain(&b, v)
		if s := b.String(); s != last {
			fmt.Fprintf(o.Out, "--- %s drain of %s: %d opted-in workload(s) left\n%s", o.Clock.Now().UTC().Format(time.TimeOnly), name, v.Remaining, s)
			last = s
		}
		if v.Current {
			if v.Done {
				fmt.Fprintf(o.Out, "cluster/%s drained: no opted-in workload is left\n", name)
				return nil
			}
			if stuck := v.stuck(); len(stuck) == v.Remaining && len(stuck) > 0 {
				return blockingError(name, stuck)
			}
		}
		select {
		case <-ctx.Done():
			var left []DrainRow
			for _, r := range v.Rows {
				if r.State == stateText(maintenance.StateWaiting) || r.State == stateText(maintenance.StateMigrating) || r.Stuck {
					left = append(left, r)
				}
			}
			return fmt.Errorf("drain of %s not finished (%w): %s", name, ctx.Err(), rowsText(left))
		case <-o.Clock.After(o.PollInterval):
		}
	}
}

func blockingError(name string, rows []DrainRow) error {
	return errors.New("drain of " + name + " blocked: " + rowsText(rows))
}

func rowsText(rows []DrainRow) string {
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("%s (%s: %s)", r.Workload, r.State, r.Detail))
	}
	if len(parts) == 0 {
		return "waiting for the descheduler's report"
	}
	return strings.Join(parts, "; ")
}

// printDrains lists the drains in progress, for kubectl livemigrate status.
func printDrains(ctx context.Context, out io.Writer, c client.Client) error {
	var list clusterv1alpha1.ClusterList
	if err := c.List(ctx, &list); err != nil {
		return fmt.Errorf("listing clusters: %w", err)
	}
	header := false
	for i := range list.Items {
		rep, err := maintenance.ReadReport(&list.Items[i])
		if err != nil || rep == nil {
			continue
		}
		if !header {
			fmt.Fprintf(out, "%-16s %-40s %-10s %-9s %s\n", "DRAINING", "TAINT", "LEFT", "DONE", "BLOCKED")
			header = true
		}
		var blocked []string
		for _, w := range rep.Workloads {
			if w.State.Stuck() {
				blocked = append(blocked, strings.ToLower(w.Kind)+"/"+w.Namespace+"/"+w.Name)
			}
		}
		fmt.Fprintf(out, "%-16s %-40s %-10d %-9v %s\n", list.Items[i].Name, rep.Taint, rep.Remaining, rep.Done, orDash(strings.Join(blocked, ",")))
	}
	if header {
		fmt.Fprintln(out)
	}
	return nil
}
