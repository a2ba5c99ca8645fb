package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	admissionv1 "k8s.io/api/admission/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-base/featuregate"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
	"github.com/livemigrate/livemigrate/internal/features"
)

// Path is where the webhook is served.
const Path = "/validate-livemigrate-io-v1alpha1-livemigration"

// SupportedKinds are the workload kinds the controller can migrate.
var SupportedKinds = lmv1alpha1.SupportedWorkloadKinds

// Validator admits LiveMigrations.
type Validator struct {
	Client  client.Reader
	Decoder admission.Decoder
	// Features are the descheduler's feature gates: a spec that needs a
	// feature that is off is denied at creation.
	Features featuregate.FeatureGate
}

// New returns a Validator decoding with the scheme, with the descheduler's
// feature gates (nil: every feature at its default).
func New(c client.Reader, scheme *runtime.Scheme, gates featuregate.FeatureGate) *Validator {
	if gates == nil {
		gates = features.New()
	}
	return &Validator{Client: c, Decoder: admission.NewDecoder(scheme), Features: gates}
}

// gated returns an error for each field of the spec whose value needs a
// feature that is off.
func gated(spec *lmv1alpha1.LiveMigrationSpec, gates featuregate.FeatureGate) field.ErrorList {
	if spec.PostCopy() && !gates.Enabled(features.PostCopyMigration) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec", "memoryTransfer"), migration.MsgPostCopyGate)}
	}
	return nil
}

var _ admission.Handler = &Validator{}

// Handle validates one admission request. A denial is an Invalid status
// (422) whose causes name each field, as the API server's own validation.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	lm, errs, err := v.decode(req.Object)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	logger := klog.FromContext(ctx).WithValues("liveMigration", klog.KRef(req.Namespace, req.Name), "operation", req.Operation)
	switch req.Operation {
	case admissionv1.Create:
		if len(errs) == 0 {
			errs = gated(&lm.Spec, v.Features)
		}
		if len(errs) == 0 {
			errs, err = v.validateCreate(ctx, lm)
			if err != nil {
				logger.Error(err, "Validating LiveMigration")
				return admission.Errored(http.StatusInternalServerError, err)
			}
		}
	case admissionv1.Update:
		errs = validateUpdate(req.OldObject, req.Object, lm, errs)
	default:
		return admission.Allowed("")
	}
	if len(errs) > 0 {
		logger.V(2).Info("Denied LiveMigration", "reasons", errs.ToAggregate().Error())
		return denied(req.Name, errs)
	}
	return admission.Allowed("")
}

// denied is the answer refusing errs, in the API server's form.
func denied(name string, errs field.ErrorList) admission.Response {
	st := apierrors.NewInvalid(lmv1alpha1.GroupVersion.WithKind("LiveMigration").GroupKind(), name, errs).ErrStatus
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &st}}
}

// valueCheck is one field of the spec written as a string (or a number)
// that must parse before the object decodes at all.
type valueCheck struct {
	path  []string
	msg   string
	parse func(string) error
	// numbers are accepted (a quantity may be written as one).
	numbers bool
}

func parseDuration(s string) error { _, err := time.ParseDuration(s); return err }
func parseQuantity(s string) error { _, err := resource.ParseQuantity(s); return err }

var valueChecks = func() []valueCheck {
	checks := []valueCheck{
		{[]string{"downtimeBudget"}, lmv1alpha1.MsgDowntimeBudget, parseDuration, false},
		{[]string{"bandwidthLimit"}, lmv1alpha1.MsgBandwidthLimit, parseQuantity, true},
		{[]string{"preCopy", "convergenceThreshold"}, lmv1alpha1.MsgConvergenceThreshold, parseQuantity, true},
	}
	for _, p := range []string{"planning", "preCopy", "checkpointing", "finalSync", "transfer", "rebinding", "restoring", "verifying"} {
		checks = append(checks, valueCheck{[]string{"timeouts", p}, lmv1alpha1.MsgTimeout, parseDuration, false})
	}
	return checks
}()

// decode decodes a LiveMigration. A duration or quantity of the spec that
// does not parse is a field error (the typed decoding would only say
// `time: invalid duration "banana"`); for the rest, the spec is checked
// with LiveMigrationSpec.Validate. An error means the request cannot be
// read at all.
func (v *Validator) decode(raw runtime.RawExtension) (*lmv1alpha1.LiveMigration, field.ErrorList, error) {
	var u map[string]interface{}
	if err := json.Unmarshal(raw.Raw, &u); err != nil {
		return nil, nil, fmt.Errorf("decoding LiveMigration: %w", err)
	}
	var errs field.ErrorList
	spec, _ := u["spec"].(map[string]interface{})
	for _, c := range valueChecks {
		val, found, _ := unstructured.NestedFieldNoCopy(spec, c.path...)
		if !found || val == nil {
			continue
		}
		var bad bool
		switch x := val.(type) {
		case string:
			bad = c.parse(x) != nil
		case float64:
			bad = !c.numbers
		default:
			bad = true
		}
		if bad {
			errs = append(errs, field.Invalid(field.NewPath("spec", c.path...), val, c.msg))
		}
	}
	if len(errs) > 0 {
		return nil, errs, nil
	}
	lm := &lmv1alpha1.LiveMigration{}
	if err := v.Decoder.DecodeRaw(raw, lm); err != nil {
		return nil, nil, fmt.Errorf("decoding LiveMigration: %w", err)
	}
	return lm, lm.Spec.Validate(field.NewPath("spec")), nil
}

// validateUpdate allows spec changes only to set spec.abort. Values are
// compared, not their spellings. An old object that does not decode (it
// predates the CRD's rules) may still change its metadata, so that it can
// be cleaned up.
func validateUpdate(oldRaw, newRaw runtime.RawExtension, lm *lmv1alpha1.LiveMigration, newErrs field.ErrorList) field.ErrorList {
	specPath := field.NewPath("spec")
	var oldU, newU map[string]interface{}
	_ = json.Unmarshal(oldRaw.Raw, &oldU)
	_ = json.Unmarshal(newRaw.Raw, &newU)
	oldSpec, _ := oldU["spec"].(map[string]interface{})
	newSpec, _ := newU["spec"].(map[string]interface{})
	oldAbort, _ := oldSpec["abort"].(bool)
	newAbort, _ := newSpec["abort"].(bool)
	if oldAbort && !newAbort {
		return field.ErrorList{field.Forbidden(specPath.Child("abort"),
			"cannot be unset once set; create a new LiveMigration to migrate again")}
	}
	unchanged := func(f string) bool { return apiequality.Semantic.DeepEqual(oldSpec[f], newSpec[f]) }
	old := &lmv1alpha1.LiveMigration{}
	if lm != nil && len(newErrs) == 0 && json.Unmarshal(oldRaw.Raw, old) == nil {
		unchanged = func(f string) bool {
			return apiequality.Semantic.DeepEqual(specField(&old.Spec, f), specField(&lm.Spec, f))
		}
	}
	var errs field.ErrorList
	for _, f := range []string{"workloadRef", "targetCluster", "downtimeBudget", "bandwidthLimit", "preCopy", "timeouts", "memoryTransfer"} {
		if !unchanged(f) {
			errs = append(errs, field.Forbidden(specPath.Child(f),
				"only spec.abort may change after creation; delete this LiveMigration (which aborts it) and create a new one"))
		}
	}
	return errs
}

// specField returns the field of the spec named by its JSON name.
func specField(s *lmv1alpha1.LiveMigrationSpec, f string) interface{} {
	switch f {
	case "workloadRef":
		ref := s.WorkloadRef
		if ref.APIVersion == "" {
			ref.APIVersion = "apps/v1"
		}
		return ref
	case "targetCluster":
		return s.TargetCluster
	case "downtimeBudget":
		return s.DowntimeBudget
	case "bandwidthLimit":
		return s.BandwidthLimit
	case "preCopy":
		return s.PreCopy
	case "timeouts":
		return s.Timeouts
	case "memoryTransfer":
		if s.MemoryTransfer == "" {
			return lmv1alpha1.MemoryTransferStopAndCopy
		}
		return s.MemoryTransfer
	}
	return nil
}

// validateCreate returns every reason to deny, or an error if it could not tell.
func (v *Validator) validateCreate(ctx context.Context, lm *lmv1alpha1.LiveMigration) (field.ErrorList, error) {
	ref := lm.Spec.WorkloadRef
	refPath := field.NewPath("spec", "workloadRef")
	targetPath := field.NewPath("spec", "targetCluster")
	var errs field.ErrorList

	rb := &workv1alpha2.ResourceBinding{}
	err := v.Client.Get(ctx, types.NamespacedName{Namespace: lm.Namespace, Name: migration.BindingName(ref)}, rb)
	switch {
	case apierrors.IsNotFound(err):
		errs = append(errs, field.Invalid(refPath.Child("name"), ref.Name, fmt.Sprintf(
			"%s %s/%s is not propagated by Karmada (no ResourceBinding %s): create a PropagationPolicy for it first",
			ref.Kind, lm.Namespace, ref.Name, migration.BindingName(ref))))
	case err != nil:
		return nil, fmt.Errorf("getting ResourceBinding: %w", err)
	case len(rb.Spec.Clusters) == 0:
		errs = append(errs, field.Invalid(refPath.Child("name"), ref.Name, fmt.Sprintf(
			"%s %s is not scheduled to any cluster yet: wait until it runs", ref.Kind, ref.Name)))
	case len(rb.Spec.Clusters) > 1:
		var names []string
		for _, c := range rb.Spec.Clusters {
			names = append(names, c.Name)
		}
		errs = append(errs, field.Invalid(refPath.Child("name"), ref.Name, fmt.Sprintf(
			"%s %s runs on %d clusters (%s): live migration moves a workload placed on exactly one cluster; "+
				"restrict its PropagationPolicy to one cluster (spreadConstraints maxGroups: 1)", ref.Kind, ref.Name, len(names), strings.Join(names, ", "))))
	case lm.Spec.TargetCluster != "" && rb.Spec.Clusters[0].Name == lm.Spec.TargetCluster:
		errs = append(errs, field.Invalid(targetPath, lm.Spec.TargetCluster, fmt.Sprintf(
			"%s %s already runs on %s: choose another cluster, or leave it empty to pick the best one",
			ref.Kind, ref.Name, lm.Spec.TargetCluster)))
	}

	if t := lm.Spec.TargetCluster; t != "" {
		c := &clusterv1alpha1.Cluster{}
		err := v.Client.Get(ctx, types.NamespacedName{Name: t}, c)
		switch {
		case apierrors.IsNotFound(err):
			errs = append(errs, field.Invalid(targetPath, t, "is not a member cluster: see `kubectl get clusters`"))
		case err != nil:
			return nil, fmt.Errorf("getting Cluster: %w", err)
		case !meta.IsStatusConditionTrue(c.Status.Conditions, clusterv1alpha1.ClusterConditionReady):
			errs = append(errs, field.Invalid(targetPath, t, "is not Ready: wait for it or choose another cluster"))
		}
	}

	var list lmv1alpha1.LiveMigrationList
	if err := v.Client.List(ctx, &list, client.InNamespace(lm.Namespace)); err != nil {
		return nil, fmt.Errorf("listing LiveMigrations: %w", err)
	}
	for i := range list.Items {
		o := &list.Items[i]
		if o.Name == lm.Name || !active(o) {
			continue
		}
		if o.Spec.WorkloadRef.Kind == ref.Kind && o.Spec.WorkloadRef.Name == ref.Name {
			errs = append(errs, field.Invalid(refPath.Child("name"), ref.Name, fmt.Sprintf(
				"LiveMigration %s is already migrating %s %s (phase %s): wait for it to finish or abort it",
				o.Name, ref.Kind, ref.Name, phaseOrPending(o.Status.Phase))))
		}
	}
	return errs, nil
}

// active reports whether another migration may still act on its workload.
// A terminal one does not, nor one that has not started and never will:
// its spec is invalid, and the controller fails it (reason InvalidSpec)
// without acting.
func active(o *lmv1alpha1.LiveMigration) bool {
	if o.Status.Phase.IsTerminal() {
		return false
	}
	notStarted := o.Status.Phase == "" || o.Status.Phase == lmv1alpha1.PhasePending
	return !notStarted || len(o.Spec.Validate(field.NewPath("spec"))) == 0
}

func phaseOrPending(p lmv1alpha1.LiveMigrationPhase) lmv1alpha1.LiveMigrationPhase {
	if p == "" {
		return lmv1alpha1.PhasePending
	}
	return p
}
