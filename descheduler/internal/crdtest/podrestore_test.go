package crdtest

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

const podRestoreCRDPath = "../../../manifests/crds/agent.livemigrate.io_podrestores.yaml"

func TestPodRestoreCRDIsAccepted(t *testing.T) {
	crd, _ := loadFile(t, podRestoreCRDPath)
	if errs := validation.ValidateCustomResourceDefinition(context.Background(), crd); len(errs) > 0 {
		t.Fatalf("a kube-apiserver would reject the CRD: %v", errs.ToAggregate())
	}
}

// podRestore is a PodRestore written at the freeze: checkpoints named, their
// images not pushed yet.
const podRestore = `
apiVersion: agent.livemigrate.io/v1alpha1
kind: PodRestore
metadata: {name: db-1234abcd, namespace: ns}
spec:
  migrationUID: 1234abcd-0000
  workload: {apiVersion: apps/v1, kind: StatefulSet, name: db}
  checkpoints:
  - name: db-0
    ordinal: 0
    containers:
    - name: app
    - name: sidecar
`

// TestPodRestoreImagesAreRecordedOnce checks that the checkpoint images of
// a PodRestore can be added once (after the push) and never changed, and
// that nothing else about the checkpoints changes.
func TestPodRestoreImagesAreRecordedOnce(t *testing.T) {
	_, ss := loadFile(t, podRestoreCRDPath)
	v := cel.NewValidator(ss, true, celconfig.PerCallLimit)
	withImages := strings.Replace(strings.Replace(podRestore,
		"    - name: app\n", "    - name: app\n      image: reg/ns-db-0-app@sha256:aa\n", 1),
		"    - name: sidecar\n", "    - name: sidecar\n      image: reg/ns-db-0-sidecar@sha256:bb\n", 1)
	cases := map[string]struct {
		old, new string
		want     string // substring of the error; empty means valid
	}{
		"create without images": {new: podRestore},
		"create with images":    {new: withImages},
		"record the images":     {old: podRestore, new: withImages},
		"record them again":     {old: withImages, new: withImages},
		"change an image": {old: withImages, new: strings.Replace(withImages, "@sha256:aa", "@sha256:cc", 1),
			want: "a checkpoint image, once recorded, is immutable"},
		"drop an image": {old: withImages, new: strings.Replace(withImages, "      image: reg/ns-db-0-app@sha256:aa\n", "", 1),
			want: "a checkpoint image, once recorded, is immutable"},
		"rename a container": {old: podRestore, new: strings.Replace(podRestore, "name: sidecar", "name: other", 1),
			want: "a checkpoint's ordinal and containers are immutable"},
		"change the ordinal": {old: podRestore, new: strings.Replace(podRestore, "ordinal: 0", "ordinal: 1", 1),
			want: "a checkpoint's ordinal and containers are immutable"},
		"add a checkpoint": {old: podRestore, new: podRestore + "  - name: db-1\n    containers:\n    - name: app\n",
			want: "the set of checkpoints are immutable"},
		"change the migration": {old: podRestore, new: strings.Replace(podRestore, "migrationUID: 1234abcd-0000", "migrationUID: other", 1),
			want: "migrationUID, workload and the set of checkpoints are immutable"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var old interface{}
			if tc.old != "" {
				old = objInt(t, tc.old)
			}
			errs, _ := v.Validate(context.Background(), field.NewPath("root"), ss, objInt(t, tc.new), old, celconfig.RuntimeCELCostBudget)
			if tc.want == "" {
				if len(errs) > 0 {
					t.Fatalf("rejected: %v", errs.ToAggregate())
				}
				return
			}
			if !strings.Contains(errs.ToAggregate().Error(), tc.want) {
				t.Fatalf("errors = %v, want %q", errs.ToAggregate(), tc.want)
			}
		})
	}
}

// objInt decodes like a kube-apiserver: whole numbers are int64.
func objInt(t *testing.T, s string) map[string]interface{} {
	t.Helper()
	data, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]interface{}
	if err := utiljson.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
