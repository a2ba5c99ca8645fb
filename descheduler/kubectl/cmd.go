package kubectl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/member"
)

// Options is shared by every subcommand.
type Options struct {
	genericiooptions.IOStreams
	ConfigFlags *genericclioptions.ConfigFlags
	// Client overrides the client built from the kubeconfig flags (tests).
	Client client.Client
	// Terminal overrides the detection of a terminal on Out (tests).
	Terminal *bool
	Clock    clock.Clock
	// PollInterval of --wait.
	PollInterval time.Duration
	// NewMemberClient overrides how the doctor builds member clients (tests).
	NewMemberClient member.NewClientFunc
}

// Scheme holds the types the plugin reads.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, lmv1alpha1.AddToScheme,
		clusterv1alpha1.Install, workv1alpha2.Install, policyv1alpha1.Install,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

func (o *Options) client() (client.Client, error) {
	if o.Client != nil {
		return o.Client, nil
	}
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig of the Karmada control plane (use --kubeconfig or --context): %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: DoctorScheme()})
	if err != nil {
		return nil, fmt.Errorf("connecting to the Karmada control plane: %w", err)
	}
	o.Client = c
	return c, nil
}

func (o *Options) namespace() (string, error) {
	if o.ConfigFlags == nil {
		return "default", nil
	}
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("resolving the namespace (use -n): %w", err)
	}
	return ns, nil
}

func (o *Options) terminal() bool {
	if o.Terminal != nil {
		return *o.Terminal
	}
	if f, ok := o.Out.(*os.File); ok {
		return term.IsTerminal(int(f.Fd()))
	}
	return false
}

// NewCommand returns the kubectl-livemigrate command.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams, ConfigFlags: genericclioptions.NewConfigFlags(true), Clock: clock.RealClock{}, PollInterval: time.Second}
	return newCommand(o)
}

func newCommand(o *Options) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-livemigrate",
		Short: "Live-migrate stateful workloads between Karmada member clusters",
		Long: `Live-migrate stateful workloads between Karmada member clusters.

Run against the Karmada control plane (its kubeconfig), in the workload's namespace.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl livemigrate"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if o.ConfigFlags != nil {
		o.ConfigFlags.AddFlags(root.PersistentFlags())
	}
	root.AddCommand(newMoveCommand(o), newStatusCommand(o), newAbortCommand(o), newPlanCommand(o),
		newDrainCommand(o), newUncordonCommand(o), newPolicyCommand(o), newDoctorCommand(o))
	return root
}

// exactArgs is cobra.ExactArgs with an error that shows the usage.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %d argument(s), got %d: usage: kubectl livemigrate %s", cmd.Name(), n, len(args), cmd.Use)
		}
		return nil
	}
}

// WaitRetryFor is how long --wait keeps trying to read the migration while
// the API server does not answer (restarting, unreachable): the migration
// goes on meanwhile, and so does following it.
const WaitRetryFor = 2 * time.Minute

// waitFor follows the migration until it is Succeeded or Failed. An answer
// that only says the API server is not there now (connection refused,
// unavailable, timeouts) is retried for WaitRetryFor; any other error ends
// the wait.
func (o *Options) waitFor(ctx context.Context, c client.Client, key client.ObjectKey) (*lmv1alpha1.LiveMigration, error) {
	p := &Progress{Out: o.Out, Terminal: o.terminal()}
	var failingSince time.Time
	for {
		lm := &lmv1alpha1.LiveMigration{}
		if err := c.Get(ctx, key, lm); err != nil {
			now := o.Clock.Now()
			if !transient(err) || ctx.Err() != nil || (!failingSince.IsZero() && now.Sub(failingSince) >= WaitRetryFor) {
				return nil, fmt.Errorf("reading LiveMigration %s: %w", key.Name, err)
			}
			if failingSince.IsZero() {
				failingSince = now
				fmt.Fprintf(o.ErrOut, "cannot read LiveMigration %s (%v); retrying for up to %s\n", key.Name, err, WaitRetryFor)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-o.Clock.After(o.PollInterval):
			}
			continue
		}
		if !failingSince.IsZero() {
			fmt.Fprintf(o.ErrOut, "reading LiveMigration %s again after %s\n", key.Name, o.Clock.Since(failingSince).Round(time.Second))
			failingSince = time.Time{}
		}
		p.Update(lm, o.Clock.Now())
		if lm.Status.Phase.IsTerminal() {
			p.Finish(lm)
			if lm.Status.Phase == lmv1alpha1.PhaseFailed {
				return lm, errors.New(Summary(lm))
			}
			return lm, nil
		}
		select {
		case <-ctx.Done():
			return lm, ctx.Err()
		case <-o.Clock.After(o.PollInterval):
		}
	}
}

// transient reports whether an error reading from the API server may go
// away by itself: the server is not reachable or not serving now. An
// answer about the request (not found, forbidden, invalid) is not.
func transient(err error) bool {
	switch {
	case errors.Is(err, context.Canceled):
		return false
	case apierrors.IsNotFound(err), apierrors.IsForbidden(err), apierrors.IsUnauthorized(err),
		apierrors.IsBadRequest(err), apierrors.IsInvalid(err), apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err):
		return false
	}
	return true
}
