package kubectl

import (
	"fmt"
	"io"
	"strings"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

func newPolicyCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "policy <kind>/<name>",
		Short: "Show a workload's effective live-migration policy and where each value comes from",
		Example: `  kubectl livemigrate policy statefulset/db
  kubectl livemigrate policy deploy/cache -n shop`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			ctx := cmd.Context()
			rb := &workv1alpha2.ResourceBinding{}
			key := types.NamespacedName{Namespace: ns, Name: migration.BindingName(ref)}
			switch err := c.Get(ctx, key, rb); {
			case apierrors.IsNotFound(err):
				// Not propagated: only the template can be read.
				rb.Namespace = ns
				rb.Spec.Resource = workv1alpha2.ObjectReference{APIVersion: "apps/v1", Kind: ref.Kind, Namespace: ns, Name: ref.Name}
				fmt.Fprintf(o.Out, "%s %s/%s is not propagated by Karmada (no ResourceBinding %s): only its own annotations apply\n", ref.Kind, ns, ref.Name, key.Name)
			case err != nil:
				return fmt.Errorf("reading ResourceBinding %s: %w", key.Name, err)
			}
			p, err := (&policy.Resolver{Client: c}).ForBinding(ctx, rb)
			if err != nil {
				return err
			}
			PrintPolicy(o.Out, ref.Kind+" "+ns+"/"+ref.Name, p)
			return nil
		},
	}
}

// PrintPolicy prints an effective policy with the source of each value.
func PrintPolicy(out io.Writer, workload string, p *policy.Policy) {
	verdict := "not opted in: livemigrate never moves it, Karmada's own behaviour applies"
	switch {
	case len(p.Invalid) > 0:
		verdict = "not opted in: malformed livemigrate.io/ annotations (fix them; nothing is moved on a guess)"
	case p.OptedIn():
		verdict = "opted in"
	case p.Strategy == policy.StrategyNone:
		verdict = "opted out (eviction-strategy None): Karmada's own behaviour applies"
	}
	fmt.Fprintf(out, "%s: %s\n", workload, verdict)
	fmt.Fprintf(out, "%-36s %-24s %s\n", "ANNOTATION", "VALUE", "FROM")
	for _, k := range policy.Keys {
		var v string
		switch k {
		case policy.AnnotationEvictionStrategy:
			v = orDash(string(p.Strategy))
		case policy.AnnotationDowntimeBudget:
			v = "(descheduler default)"
			if p.DowntimeBudget != nil {
				v = p.DowntimeBudget.String()
			}
		case policy.AnnotationRebalance:
			v = fmt.Sprint(p.Rebalance)
		case policy.AnnotationDrainPriority:
			v = fmt.Sprint(p.DrainPriority)
		case policy.AnnotationMemoryTransfer:
			v = string(lmv1alpha1.MemoryTransferStopAndCopy)
			if p.MemoryTransfer != "" {
				v = string(p.MemoryTransfer)
			}
		}
		fmt.Fprintf(out, "%-36s %-24s %s\n", k, v, p.From[k])
	}
	if len(p.Invalid) > 0 {
		fmt.Fprintln(out, "malformed:")
		for _, iv := range p.Invalid {
			fmt.Fprintf(out, "  %s\n", strings.TrimSpace(iv.String()))
		}
	}
}
