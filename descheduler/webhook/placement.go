package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/descheduler/placementtrigger"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

// PlacementPath is where the placement webhook is served.
const PlacementPath = "/mutate-livemigrate-io-placement"

// PlacementHold is the mutating webhook on ResourceBinding updates that
// keeps an opted-in running workload from being moved by a change of
// spec.clusters that no live migration makes. Its configuration's
// matchConditions send it only the updates of bindings labelled
// livemigrate.io/opted-in that take the workload off the one cluster it
// runs on. It resolves the workload's policy again; for an opted-in
// workload whose update placementtrigger.Hold holds, it keeps the old
// spec.clusters and records the new ones (karmada-scheduler's result) in
// the livemigrate.io/scheduled-clusters annotation, where the placement
// trigger reads it. It never denies: everything else in the update is
// admitted as written.
type PlacementHold struct {
	Client   client.Reader
	Policies *policy.Resolver
}

var _ admission.Handler = PlacementHold{}

// Handle admits one ResourceBinding update.
func (h PlacementHold) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Update {
		return h.allowed("")
	}
	cur, old := &workv1alpha2.ResourceBinding{}, &workv1alpha2.ResourceBinding{}
	if err := json.Unmarshal(req.Object.Raw, cur); err != nil {
		return h.errored(http.StatusBadRequest, fmt.Errorf("decoding the ResourceBinding: %w", err))
	}
	if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
		return h.errored(http.StatusBadRequest, fmt.Errorf("decoding the old ResourceBinding: %w", err))
	}
	if _, moves := placementtrigger.Moves(old, cur); !moves {
		return h.allowed("")
	}
	pol, err := h.Policies.ForBinding(ctx, cur)
	if err != nil {
		return h.errored(http.StatusInternalServerError, fmt.Errorf("resolving the policy of ResourceBinding %s/%s: %w", req.Namespace, req.Name, err))
	}
	if !pol.OptedIn() {
		return h.allowed("")
	}
	var migrations lmv1alpha1.LiveMigrationList
	if err := h.Client.List(ctx, &migrations, client.InNamespace(cur.Namespace)); err != nil {
		return h.errored(http.StatusInternalServerError, fmt.Errorf("listing LiveMigrations in %s: %w", cur.Namespace, err))
	}
	hold, why := placementtrigger.Hold(old, cur, migrations.Items)
	if !hold {
		klog.FromContext(ctx).V(2).Info("Admitted a placement change of an opted-in workload", "binding", klog.KRef(req.Namespace, req.Name), "reason", why)
		return h.allowed("")
	}
	// Patch the raw objects, so that fields this version of the types does
	// not know survive.
	var obj, oldObj map[string]any
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return h.errored(http.StatusBadRequest, fmt.Errorf("decoding the ResourceBinding: %w", err))
	}
	if err := json.Unmarshal(req.OldObject.Raw, &oldObj); err != nil {
		return h.errored(http.StatusBadRequest, fmt.Errorf("decoding the old ResourceBinding: %w", err))
	}
	spec, _ := obj["spec"].(map[string]any)
	oldSpec, _ := oldObj["spec"].(map[string]any)
	if spec == nil || oldSpec == nil {
		return h.errored(http.StatusBadRequest, fmt.Errorf("ResourceBinding %s/%s has no spec", req.Namespace, req.Name))
	}
	spec["clusters"] = oldSpec["clusters"]
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		obj["metadata"] = md
	}
	ann, _ := md["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		md["annotations"] = ann
	}
	ann[policy.AnnotationScheduledClusters] = placementtrigger.EncodeScheduled(cur.Spec.Clusters)
	raw, err := json.Marshal(obj)
	if err != nil {
		return h.errored(http.StatusInternalServerError, fmt.Errorf("encoding the held ResourceBinding: %w", err))
	}
	klog.FromContext(ctx).Info("Held a placement change of an opted-in workload", "binding", klog.KRef(req.Namespace, req.Name),
		"from", placementtrigger.Names(old.Spec.Clusters), "scheduled", placementtrigger.Names(cur.Spec.Clusters))
	metrics.PlacementAdmissionRequests.WithLabelValues(metrics.AdmissionHeld).Inc()
	resp := admission.PatchResponseFromRaw(req.Object.Raw, raw)
	resp.Warnings = []string{fmt.Sprintf("ResourceBinding %s/%s: spec.clusters kept: %s (%s)", req.Namespace, req.Name, why, policy.AnnotationScheduledClusters)}
	return resp
}

func (PlacementHold) allowed(msg string) admission.Response {
	metrics.PlacementAdmissionRequests.WithLabelValues(metrics.AdmissionAllowed).Inc()
	return admission.Allowed(msg)
}

func (PlacementHold) errored(code int32, err error) admission.Response {
	metrics.PlacementAdmissionRequests.WithLabelValues(metrics.AdmissionError).Inc()
	return admission.Errored(code, err)
}
