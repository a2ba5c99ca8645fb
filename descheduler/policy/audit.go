package policy

import (
	"context"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/livemigrate/livemigrate/descheduler/metrics"
)

// AuditedKinds are the kinds that carry policy annotations.
var AuditedKinds = []schema.GroupVersionKind{
	{Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "apps", Version: "v1", Kind: "StatefulSet"},
	{Group: "policy.karmada.io", Version: "v1alpha1", Kind: "PropagationPolicy"},
	{Group: "policy.karmada.io", Version: "v1alpha1", Kind: "ClusterPropagationPolicy"},
}

// Auditor finds the objects of one kind whose policy annotations are
// malformed (they got in while the admission webhook was down, or before
// it): each gets a Warning event InvalidPolicy saying that the workloads it
// covers are treated as not opted in, and the gauge
// livemigrate_policy_invalid_objects counts them.
type Auditor struct {
	Client   client.Reader
	Recorder events.EventRecorder
	GVK      schema.GroupVersionKind

	mu sync.Mutex
	// invalid holds the message last reported per object.
	invalid map[types.NamespacedName]string
}

// hasPolicyAnnotation selects the objects carrying a livemigrate.io/
// annotation, now or before the update.
func hasPolicyAnnotation(o client.Object) bool {
	for k := range o.GetAnnotations() {
		if strings.HasPrefix(k, Prefix) {
			return true
		}
	}
	return false
}

// SetupWithManager watches the kind's metadata only.
func (a *Auditor) SetupWithManager(mgr ctrl.Manager) error {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(a.GVK)
	return ctrl.NewControllerManagedBy(mgr).
		Named("policy-audit-"+strings.ToLower(a.GVK.Kind)).
		For(obj, builder.OnlyMetadata, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool { return hasPolicyAnnotation(e.Object) },
			UpdateFunc: func(e event.UpdateEvent) bool {
				return hasPolicyAnnotation(e.ObjectOld) || hasPolicyAnnotation(e.ObjectNew)
			},
			DeleteFunc:  func(e event.DeleteEvent) bool { return hasPolicyAnnotation(e.Object) },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		Complete(a)
}

// Reconcile checks one object's annotations.
func (a *Auditor) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(a.GVK)
	msg := ""
	switch err := a.Client.Get(ctx, req.NamespacedName, obj); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return reconcile.Result{}, err
	default:
		if errs := Validate(obj.Annotations); len(errs) > 0 {
			msg = errs.ToAggregate().Error()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.invalid == nil {
		a.invalid = map[types.NamespacedName]string{}
	}
	prev, had := a.invalid[req.NamespacedName]
	if msg == "" {
		delete(a.invalid, req.NamespacedName)
	} else {
		a.invalid[req.NamespacedName] = msg
		if !had || prev != msg {
			klog.FromContext(ctx).Info("Malformed policy annotations: treated as not opted in", "kind", a.GVK.Kind, "object", req.NamespacedName, "errors", msg)
			if a.Recorder != nil {
				a.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, "InvalidPolicy", "Validate",
					"malformed livemigrate.io/ annotations, so livemigrate treats the workloads they cover as not opted in and never moves them: %s", msg)
			}
		}
	}
	metrics.InvalidPolicyObjects.WithLabelValues(metrics.PolicyKind(a.GVK.Kind)).Set(float64(len(a.invalid)))
	return reconcile.Result{}, nil
}
