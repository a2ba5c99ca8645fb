package builder

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// Scheme returns a scheme with the Kubernetes, Karmada and livemigrate types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, lmv1alpha1.AddToScheme, agentv1alpha1.AddToScheme,
		clusterv1alpha1.Install, workv1alpha1.Install, workv1alpha2.Install, policyv1alpha1.Install,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}
