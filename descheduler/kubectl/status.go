package kubectl

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

func newStatusCommand(o *Options) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "status [name]",
		Short: "List live migrations, or show one in detail",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if len(args) == 0 {
				if err := printDrains(ctx, o.Out, c); err != nil {
					return err
				}
				var list lmv1alpha1.LiveMigrationList
				if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
					return fmt.Errorf("listing LiveMigrations: %w", err)
				}
				if len(list.Items) == 0 {
					fmt.Fprintf(o.Out, "No live migrations in namespace %s. Start one with: kubectl livemigrate move <kind>/<name>\n", ns)
					return nil
				}
				sort.Slice(list.Items, func(i, j int) bool {
					return list.Items[i].CreationTimestamp.After(list.Items[j].CreationTimestamp.Time)
				})
				Table(o.Out, list.Items, o.Clock.Now())
				return nil
			}
			key := types.NamespacedName{Namespace: ns, Name: args[0]}
			if wait {
				_, err := o.waitFor(ctx, c, key)
				return err
			}
			lm := &lmv1alpha1.LiveMigration{}
			if err := c.Get(ctx, key, lm); err != nil {
				return fmt.Errorf("reading LiveMigration %s in namespace %s (list them with: kubectl livemigrate status): %w", args[0], ns, err)
			}
			Describe(o.Out, lm)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "Follow the migration until it succeeds or fails.")
	return cmd
}

func newAbortCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "abort <name>",
		Short: "Abort a live migration: it rolls back and the workload keeps running on its source",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			lm := &lmv1alpha1.LiveMigration{}
			if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: ns, Name: args[0]}, lm); err != nil {
				return fmt.Errorf("reading LiveMigration %s in namespace %s (list them with: kubectl livemigrate status): %w", args[0], ns, err)
			}
			switch {
			case lm.Status.Phase.IsTerminal():
				return fmt.Errorf("livemigration %s already %s: nothing to abort", lm.Name, lm.Status.Phase)
			case lm.Status.Phase == lmv1alpha1.PhaseCleanup:
				return fmt.Errorf("livemigration %s is in Cleanup: the workload already runs on %s and cannot be rolled back; migrate it back instead", lm.Name, lm.Status.TargetCluster)
			case lm.Spec.Abort:
				fmt.Fprintf(o.Out, "livemigration %s is already aborting\n", lm.Name)
				return nil
			}
			patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"abort":true}}`))
			if err := c.Patch(cmd.Context(), lm, patch); err != nil {
				return fmt.Errorf("aborting LiveMigration %s: %w", lm.Name, err)
			}
			fmt.Fprintf(o.Out, "livemigration.livemigrate.io/%s aborted; follow the rollback with: kubectl livemigrate status %s --wait\n", lm.Name, lm.Name)
			return nil
		},
	}
}

func parseQuantity(s string) (resource.Quantity, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return q, fmt.Errorf("%q is not a quantity (e.g. 200Mi): %w", s, err)
	}
	if q.Sign() <= 0 {
		return q, fmt.Errorf("%q must be positive", s)
	}
	return q, nil
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
