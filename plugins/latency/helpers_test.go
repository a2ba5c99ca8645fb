package latency

import "k8s.io/apimachinery/pkg/runtime"

func runtimeToUnstructured(obj interface{}) (map[string]interface{}, error) {
	return runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
}
