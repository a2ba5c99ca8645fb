package kubectl

import (
	"fmt"
	"strings"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

var kindAliases = map[string]string{
	"deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment",
	"deployment.apps": "Deployment", "deployments.apps": "Deployment",
	"sts": "StatefulSet", "statefulset": "StatefulSet", "statefulsets": "StatefulSet",
	"statefulset.apps": "StatefulSet", "statefulsets.apps": "StatefulSet",
}

// ParseWorkload parses <kind>/<name> (kubectl's spelling of kinds is accepted).
func ParseWorkload(arg string) (lmv1alpha1.WorkloadReference, error) {
	kind, name, ok := strings.Cut(arg, "/")
	if !ok || kind == "" || name == "" || strings.Contains(name, "/") {
		return lmv1alpha1.WorkloadReference{}, fmt.Errorf("%q is not <kind>/<name>: write e.g. deployment/web or statefulset/db", arg)
	}
	k, ok := kindAliases[strings.ToLower(kind)]
	if !ok {
		return lmv1alpha1.WorkloadReference{}, fmt.Errorf("kind %q cannot be live-migrated: use deployment/<name> or statefulset/<name>", kind)
	}
	return lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: k, Name: name}, nil
}
