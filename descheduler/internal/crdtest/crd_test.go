package crdtest

import (
	"context"
	"os"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

const crdPath = "../../../manifests/crds/livemigrate.io_livemigrations.yaml"

func loadFile(t *testing.T, path string) (*apiextensions.CustomResourceDefinition, *structuralschema.Structural) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v1 := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, v1); err != nil {
		t.Fatal(err)
	}
	apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(v1)
	crd := &apiextensions.CustomResourceDefinition{}
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(v1, crd, nil); err != nil {
		t.Fatal(err)
	}
	// With a single version, the internal form keeps the schema at spec.validation.
	schema := crd.Spec.Validation
	if crd.Spec.Versions[0].Schema != nil {
		schema = crd.Spec.Versions[0].Schema
	}
	ss, err := structuralschema.NewStructural(schema.OpenAPIV3Schema)
	if err != nil {
		t.Fatal(err)
	}
	return crd, ss
}

func TestCRDIsAccepted(t *testing.T) {
	for _, path := range []string{crdPath, podRestoreCRDPath} {
		t.Run(path, func(t *testing.T) {
			crd, _ := loadFile(t, path)
			if errs := validation.ValidateCustomResourceDefinition(context.Background(), crd); len(errs) > 0 {
				t.Fatalf("a kube-apiserver would reject the CRD: %v", errs.ToAggregate())
			}
		})
	}
}

// obj decodes like a kube-apiserver: whole numbers are int64.
func obj(t *testing.T, s string) map[string]interface{} {
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

// celCase is an update (a create without old) checked against a CRD's CEL
// rules.
type celCase struct {
	old, new string
	want     string // substring of the error; empty means valid
}

// checkCEL validates each case against the rules of the CRD at path, as a
// kube-apiserver would.
func checkCEL(t *testing.T, path string, cases map[string]celCase) {
	t.Helper()
	_, ss := loadFile(t, path)
	v := cel.NewValidator(ss, true, celconfig.PerCallLimit)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var old interface{}
			if tc.old != "" {
				old = obj(t, tc.old)
			}
			errs, _ := v.Validate(context.Background(), field.NewPath("root"), ss, obj(t, tc.new), old, celconfig.RuntimeCELCostBudget)
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

const base = `
apiVersion: livemigrate.io/v1alpha1
kind: LiveMigration
metadata: {name: m, namespace: ns}
spec:
  workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: db}
  targetCluster: b
  downtimeBudget: 2s
`

func TestCELRules(t *testing.T) {
	checkCEL(t, crdPath, map[string]celCase{
		"create":    {new: base},
		"set abort": {old: base, new: base + "  abort: true\n"},
		"unset abort": {old: base + "  abort: true\n", new: base + "  abort: false\n",
			want: "spec.abort cannot be unset once set"},
		"drop abort": {old: base + "  abort: true\n", new: base,
			want: "spec.abort cannot be unset once set"},
		"change target": {old: base, new: strings.Replace(base, "targetCluster: b", "targetCluster: c", 1),
			want: "spec.targetCluster is immutable"},
		"add target": {old: strings.Replace(base, "  targetCluster: b\n", "", 1), new: base,
			want: "spec.targetCluster is immutable"},
		"change budget": {old: base, new: strings.Replace(base, "downtimeBudget: 2s", "downtimeBudget: 3s", 1),
			want: "spec.downtimeBudget is immutable"},
		"change workload": {old: base, new: strings.Replace(base, "name: db}", "name: other}", 1),
			want: "spec.workloadRef is immutable"},
		"add bandwidth": {old: base, new: base + "  bandwidthLimit: 100Mi\n",
			want: "spec.bandwidthLimit is immutable"},
		"add timeouts": {old: base, new: base + "  timeouts: {preCopy: 1m}\n",
			want: "spec.timeouts is immutable"},
		"status only": {old: base, new: base + "status: {phase: PreCopy}\n"},
	})
}
