package kubectl

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

type moveFlags struct {
	to      string
	wait    bool
	budget  time.Duration
	name    string
	timeout time.Duration
	bwLimit string
}

func newMoveCommand(o *Options) *cobra.Command {
	f := &moveFlags{}
	cmd := &cobra.Command{
		Use:   "move <kind>/<name> [--to CLUSTER] [--wait]",
		Short: "Live-migrate a Deployment or StatefulSet to another member cluster",
		Example: `  kubectl livemigrate move statefulset/db --to member2 --wait
  kubectl livemigrate move deployment/cache --downtime-budget 2s`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := f.build(args[0])
			if err != nil {
				return err
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			lm.Namespace = ns
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := c.Create(ctx, lm); err != nil {
				return fmt.Errorf("creating the LiveMigration: %w", err)
			}
			fmt.Fprintf(o.Out, "livemigration.livemigrate.io/%s created\n", lm.Name)
			if !f.wait {
				fmt.Fprintf(o.Out, "follow it with: kubectl livemigrate status %s\n", lm.Name)
				return nil
			}
			if f.timeout > 0 {
				var cancel func()
				ctx, cancel = contextWithTimeout(ctx, f.timeout)
				defer cancel()
			}
			_, err = o.waitFor(ctx, c, client.ObjectKeyFromObject(lm))
			return err
		},
	}
	cmd.Flags().StringVar(&f.to, "to", "", "Target member cluster; the best-scored Ready cluster when empty.")
	cmd.Flags().BoolVar(&f.wait, "wait", false, "Follow the migration until it succeeds or fails.")
	cmd.Flags().DurationVar(&f.budget, "downtime-budget", 0, "Longest the workload may stay frozen (the controller's default when 0).")
	cmd.Flags().StringVar(&f.bwLimit, "bandwidth-limit", "", "Bytes per second for volume replication and checkpoint transfer, e.g. 200Mi.")
	cmd.Flags().StringVar(&f.name, "name", "", "Name of the LiveMigration (generated from the workload's name when empty).")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 0, "With --wait, stop following after this long (the migration goes on).")
	return cmd
}

// build turns the arguments into the LiveMigration to create.
func (f *moveFlags) build(arg string) (*lmv1alpha1.LiveMigration, error) {
	ref, err := ParseWorkload(arg)
	if err != nil {
		return nil, err
	}
	lm := &lmv1alpha1.LiveMigration{Spec: lmv1alpha1.LiveMigrationSpec{WorkloadRef: ref, TargetCluster: f.to}}
	lm.Labels = map[string]string{policy.LabelTrigger: string(policy.TriggerManual)}
	if f.name != "" {
		lm.Name = f.name
	} else {
		lm.GenerateName = ref.Name + "-"
	}
	if f.budget < 0 {
		return nil, fmt.Errorf("--downtime-budget must be positive")
	}
	if f.budget > 0 {
		lm.Spec.DowntimeBudget = &metav1.Duration{Duration: f.budget}
	}
	if f.bwLimit != "" {
		q, err := parseQuantity(f.bwLimit)
		if err != nil {
			return nil, fmt.Errorf("--bandwidth-limit: %w", err)
		}
		lm.Spec.BandwidthLimit = &q
	}
	return lm, nil
}
