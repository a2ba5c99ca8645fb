package policy

import (
	"context"
	"fmt"

	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Resolver reads the layers of a workload's policy from the Karmada plane.
type Resolver struct {
	Client client.Reader
}

// ForBinding resolves the policy of the workload a ResourceBinding
// propagates. The policy is the one Karmada recorded on the binding (its
// propagationpolicy.karmada.io/* or clusterpropagationpolicy.karmada.io/*
// annotations), never re-matched by selectors. A template or policy that no
// longer exists contributes nothing.
func (r *Resolver) ForBinding(ctx context.Context, rb *workv1alpha2.ResourceBinding) (*Policy, error) {
	layers, err := r.Layers(ctx, rb)
	if err != nil {
		return nil, err
	}
	return Resolve(layers...), nil
}

// Layers returns the template's, the PropagationPolicy's and the
// ClusterPropagationPolicy's annotations, highest precedence first.
func (r *Resolver) Layers(ctx context.Context, rb *workv1alpha2.ResourceBinding) ([]Layer, error) {
	var layers []Layer
	ref := rb.Spec.Resource
	tmpl := &metav1.PartialObjectMetadata{}
	tmpl.SetGroupVersionKind(schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind))
	ns := ref.Namespace
	if ns == "" {
		ns = rb.Namespace
	}
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, tmpl); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("getting %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
	default:
		layers = append(layers, Layer{Source: Source{Level: LevelTemplate, Kind: ref.Kind, Namespace: ns, Name: ref.Name}, Annotations: tmpl.Annotations})
	}
	a := rb.Annotations
	if name := a[policyv1alpha1.PropagationPolicyNameAnnotation]; name != "" {
		pns := a[policyv1alpha1.PropagationPolicyNamespaceAnnotation]
		if pns == "" {
			pns = rb.Namespace
		}
		pp := &policyv1alpha1.PropagationPolicy{}
		switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: pns, Name: name}, pp); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("getting PropagationPolicy %s/%s: %w", pns, name, err)
		default:
			layers = append(layers, Layer{Source: Source{Level: LevelPropagationPolicy, Kind: "PropagationPolicy", Namespace: pns, Name: name}, Annotations: pp.Annotations})
		}
	}
	if name := a[policyv1alpha1.ClusterPropagationPolicyAnnotation]; name != "" {
		cpp := &policyv1alpha1.ClusterPropagationPolicy{}
		switch err := r.Client.Get(ctx, types.NamespacedName{Name: name}, cpp); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("getting ClusterPropagationPolicy %s: %w", name, err)
		default:
			layers = append(layers, Layer{Source: Source{Level: LevelClusterPropagationPolicy, Kind: "ClusterPropagationPolicy", Name: name}, Annotations: cpp.Annotations})
		}
	}
	return layers, nil
}
