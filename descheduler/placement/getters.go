package placement

import (
	"context"
	"time"

	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReaderGetters serves the Latency plugin's template and policy getters from
// a (cache-backed) controller-runtime reader.
type ReaderGetters struct {
	Reader  client.Reader
	Timeout time.Duration
}

func (g ReaderGetters) ctx() (context.Context, context.CancelFunc) {
	t := g.Timeout
	if t <= 0 {
		t = 10 * time.Second
	}
	return context.WithTimeout(context.Background(), t)
}

// GetTemplate returns the resource template a binding refers to.
func (g ReaderGetters) GetTemplate(ref *workv1alpha2.ObjectReference) (*unstructured.Unstructured, error) {
	ctx, cancel := g.ctx()
	defer cancel()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind))
	if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, u); err != nil {
		return nil, err
	}
	return u, nil
}

// GetPropagationPolicy returns a PropagationPolicy.
func (g ReaderGetters) GetPropagationPolicy(namespace, name string) (metav1.Object, error) {
	ctx, cancel := g.ctx()
	defer cancel()
	p := &policyv1alpha1.PropagationPolicy{}
	if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, p); err != nil {
		return nil, err
	}
	return p, nil
}

// GetClusterPropagationPolicy returns a ClusterPropagationPolicy.
func (g ReaderGetters) GetClusterPropagationPolicy(name string) (metav1.Object, error) {
	ctx, cancel := g.ctx()
	defer cancel()
	p := &policyv1alpha1.ClusterPropagationPolicy{}
	if err := g.Reader.Get(ctx, types.NamespacedName{Name: name}, p); err != nil {
		return nil, err
	}
	return p, nil
}
