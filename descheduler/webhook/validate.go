package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	admissionv1 "k8s.io/api/admission/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// Path is where the webhook is served.
const Path = "/validate-livemigrate-io-v1alpha1-livemigration"

// SupportedKinds are the workload kinds the controller can migrate.
var SupportedKinds = map[string]bool{"Deployment": true, "StatefulSet": true}

// Validator admits LiveMigrations.
type Validator struct {
	Client  client.Reader
	Decoder admission.Decoder
}

// New returns a Validator decoding with the scheme.
func New(c client.Reader, scheme *runtime.Scheme) *Validator {
	return &Validator{Client: c, Decoder: admission.NewDecoder(scheme)}
}

var _ admission.Handler = &Validator{}

// Handle validates one admission request.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	lm := &lmv1alpha1.LiveMigration{}
	if err := v.Decoder.Decode(req, lm); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	logger := klog.FromContext(ctx).WithValues("liveMigration", klog.KObj(lm), "operation", req.Operation)
	switch req.Operation {
	case admissionv1.Create:
		reasons, err := v.validateCreate(ctx, lm)
		if err != nil {
			logger.Error(err, "Validating LiveMigration")
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if len(reasons) > 0 {
			logger.V(2).Info("Denied LiveMigration", "reasons", reasons)
			return admission.Denied(strings.Join(reasons, "; "))
		}
	case admissionv1.Update:
		old := &lmv1alpha1.LiveMigration{}
		if err := v.Decoder.DecodeRaw(req.OldObject, old); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if msg := validateUpdate(old, lm); msg != "" {
			return admission.Denied(msg)
		}
	}
	return admission.Allowed("")
}

// validateUpdate allows spec changes only to set spec.abort.
func validateUpdate(old, lm *lmv1alpha1.LiveMigration) string {
	if old.Spec.Abort && !lm.Spec.Abort {
		return "spec.abort cannot be unset once set; create a new LiveMigration to migrate again"
	}
	a, b := old.Spec.DeepCopy(), lm.Spec.DeepCopy()
	a.Abort, b.Abort = false, false
	if !apiequality.Semantic.DeepEqual(a, b) {
		return "only spec.abort may change after creation; delete this LiveMigration (which aborts it) and create a new one"
	}
	return ""
}

// validateCreate returns every reason to deny, or an error if it could not tell.
func (v *Validator) validateCreate(ctx context.Context, lm *lmv1alpha1.LiveMigration) ([]string, error) {
	var reasons []string
	ref := lm.Spec.WorkloadRef
	if ref.APIVersion != "" && ref.APIVersion != "apps/v1" {
		reasons = append(reasons, fmt.Sprintf("spec.workloadRef.apiVersion %q is not supported: use apps/v1", ref.APIVersion))
	}
	if !SupportedKinds[ref.Kind] {
		return append(reasons, fmt.Sprintf("spec.workloadRef.kind %q is not supported: use Deployment or StatefulSet", ref.Kind)), nil
	}
	if d := lm.Spec.DowntimeBudget; d != nil && d.Duration <= 0 {
		reasons = append(reasons, "spec.downtimeBudget must be positive")
	}
	if q := lm.Spec.BandwidthLimit; q != nil && q.Sign() <= 0 {
		reasons = append(reasons, "spec.bandwidthLimit must be positive (bytes per second), or left empty for unlimited")
	}

	rb := &workv1alpha2.ResourceBinding{}
	err := v.Client.Get(ctx, types.NamespacedName{Namespace: lm.Namespace, Name: migration.BindingName(ref)}, rb)
	switch {
	case apierrors.IsNotFound(err):
		reasons = append(reasons, fmt.Sprintf("%s %s/%s is not propagated by Karmada (no ResourceBinding %s): create a PropagationPolicy for it first",
			ref.Kind, lm.Namespace, ref.Name, migration.BindingName(ref)))
	case err != nil:
		return nil, fmt.Errorf("getting ResourceBinding: %w", err)
	case len(rb.Spec.Clusters) == 0:
		reasons = append(reasons, fmt.Sprintf("%s %s is not scheduled to any cluster yet: wait until it runs", ref.Kind, ref.Name))
	case len(rb.Spec.Clusters) > 1:
		var names []string
		for _, c := range rb.Spec.Clusters {
			names = append(names, c.Name)
		}
		reasons = append(reasons, fmt.Sprintf("%s %s runs on %d clusters (%s): live migration moves a workload placed on exactly one cluster; "+
			"restrict its PropagationPolicy to one cluster (spreadConstraints maxGroups: 1)", ref.Kind, ref.Name, len(names), strings.Join(names, ", ")))
	case lm.Spec.TargetCluster != "" && rb.Spec.Clusters[0].Name == lm.Spec.TargetCluster:
		reasons = append(reasons, fmt.Sprintf("spec.targetCluster %s is where %s %s already runs: choose another cluster, or leave it empty to pick the best one",
			lm.Spec.TargetCluster, ref.Kind, ref.Name))
	}

	if t := lm.Spec.TargetCluster; t != "" {
		c := &clusterv1alpha1.Cluster{}
		err := v.Client.Get(ctx, types.NamespacedName{Name: t}, c)
		switch {
		case apierrors.IsNotFound(err):
			reasons = append(reasons, fmt.Sprintf("spec.targetCluster %q is not a member cluster: see `kubectl get clusters`", t))
		case err != nil:
			return nil, fmt.Errorf("getting Cluster: %w", err)
		case !meta.IsStatusConditionTrue(c.Status.Conditions, clusterv1alpha1.ClusterConditionReady):
			reasons = append(reasons, fmt.Sprintf("spec.targetCluster %q is not Ready: wait for it or choose another cluster", t))
		}
	}

	var list lmv1alpha1.LiveMigrationList
	if err := v.Client.List(ctx, &list, client.InNamespace(lm.Namespace)); err != nil {
		return nil, fmt.Errorf("listing LiveMigrations: %w", err)
	}
	for i := range list.Items {
		o := &list.Items[i]
		if o.Name == lm.Name || o.Status.Phase.IsTerminal() {
			continue
		}
		if o.Spec.WorkloadRef.Kind == ref.Kind && o.Spec.WorkloadRef.Name == ref.Name {
			reasons = append(reasons, fmt.Sprintf("LiveMigration %s is already migrating %s %s (phase %s): wait for it to finish or abort it",
				o.Name, ref.Kind, ref.Name, phaseOrPending(o.Status.Phase)))
		}
	}
	return reasons, nil
}

func phaseOrPending(p lmv1alpha1.LiveMigrationPhase) lmv1alpha1.LiveMigrationPhase {
	if p == "" {
		return lmv1alpha1.PhasePending
	}
	return p
}
