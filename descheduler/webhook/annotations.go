package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

// PolicyPath is where the policy annotation webhook is served.
const PolicyPath = "/validate-livemigrate-io-policy-annotations"

// PolicyAnnotations admits Deployments, StatefulSets, PropagationPolicies and
// ClusterPropagationPolicies carrying livemigrate.io/ annotations (the
// webhook configuration's matchConditions send it no other object): it
// denies malformed values, naming the annotation, the value and the allowed
// values. On update, a malformed value that the old object already had is
// let through (the object got in without this webhook; the descheduler
// treats it as not opted in and says so with an event), so that Karmada's
// own updates of a template keep working.
type PolicyAnnotations struct{}

var _ admission.Handler = PolicyAnnotations{}

// Handle validates one admission request.
func (PolicyAnnotations) Handle(ctx context.Context, req admission.Request) admission.Response {
	kind := metrics.PolicyKind(req.Kind.Kind)
	obj := &metav1.PartialObjectMetadata{}
	if err := json.Unmarshal(req.Object.Raw, obj); err != nil {
		metrics.PolicyAdmissionRequests.WithLabelValues(kind, metrics.AdmissionError).Inc()
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the object's metadata: %w", err))
	}
	errs := policy.Validate(obj.Annotations)
	if req.Operation == admissionv1.Update && len(errs) > 0 && len(req.OldObject.Raw) > 0 {
		old := &metav1.PartialObjectMetadata{}
		if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
			metrics.PolicyAdmissionRequests.WithLabelValues(kind, metrics.AdmissionError).Inc()
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the old object's metadata: %w", err))
		}
		errs = unchanged(errs, obj.Annotations, old.Annotations)
	}
	if len(errs) == 0 {
		metrics.PolicyAdmissionRequests.WithLabelValues(kind, metrics.AdmissionAllowed).Inc()
		return admission.Allowed("")
	}
	metrics.PolicyAdmissionRequests.WithLabelValues(kind, metrics.AdmissionDenied).Inc()
	klog.FromContext(ctx).V(2).Info("Denied malformed policy annotations", "kind", req.Kind.Kind,
		"object", klog.KRef(req.Namespace, req.Name), "errors", errs.ToAggregate().Error())
	return admission.Denied(fmt.Sprintf("%s %s: %s", req.Kind.Kind, name(req, obj), errs.ToAggregate().Error()))
}

// unchanged drops the errors about annotations whose value the old object
// already had.
func unchanged(errs field.ErrorList, cur, old map[string]string) field.ErrorList {
	var out field.ErrorList
	for _, e := range errs {
		key := keyOf(e, cur)
		if v, ok := old[key]; ok && key != "" && v == cur[key] {
			continue
		}
		out = append(out, e)
	}
	return out
}

// keyOf finds the annotation an error is about: its path names the key, or
// (for an unknown key) its value is the key.
func keyOf(e *field.Error, annotations map[string]string) string {
	for k := range annotations {
		if e.Field == field.NewPath("metadata", "annotations").Key(k).String() {
			return k
		}
	}
	if k, ok := e.BadValue.(string); ok {
		if _, present := annotations[k]; present {
			return k
		}
	}
	return ""
}

func name(req admission.Request, obj *metav1.PartialObjectMetadata) string {
	n := obj.Name
	if n == "" {
		n = req.Name
	}
	if n == "" {
		n = obj.GenerateName + "*"
	}
	if req.Namespace != "" {
		return req.Namespace + "/" + n
	}
	return n
}
