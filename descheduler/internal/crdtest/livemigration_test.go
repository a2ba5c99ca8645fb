package crdtest

import (
	"context"
	"os"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	apiextensionsvalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// blockingNoise is what a kube-apiserver appends when a schema error
// (required, enum, maxLength, maxItems, type) keeps it from running the CEL
// rules: an error without a field that tells the user nothing.
const blockingNoise = "some validation rules were not checked"

// admit validates a create (old empty) or an update of a LiveMigration the
// way a kube-apiserver's custom resource strategy does: defaults, the
// OpenAPI schema, then the CEL rules unless a schema error blocks them (then
// the blockingNoise error instead). Paths start at the object's root, as in
// the API's answer.
func admit(t *testing.T, old, new string) field.ErrorList {
	t.Helper()
	crd, ss := loadFile(t, crdPath)
	schema := crd.Spec.Validation
	if crd.Spec.Versions[0].Schema != nil {
		schema = crd.Spec.Versions[0].Schema
	}
	sv, _, err := apiextensionsvalidation.NewSchemaValidator(schema.OpenAPIV3Schema)
	if err != nil {
		t.Fatal(err)
	}
	newObj := obj(t, new)
	structuraldefaulting.Default(newObj, ss)
	var oldObj map[string]interface{}
	var errs field.ErrorList
	if old != "" {
		oldObj = obj(t, old)
		structuraldefaulting.Default(oldObj, ss)
		errs = apiextensionsvalidation.ValidateCustomResourceUpdate(nil, newObj, oldObj, sv)
	} else {
		errs = apiextensionsvalidation.ValidateCustomResource(nil, newObj, sv)
	}
	// As hasBlockingErr in k8s.io/apiextensions-apiserver/pkg/registry/customresource/strategy.go.
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return append(errs, field.Invalid(nil, nil, blockingNoise+" because the object was invalid; correct the existing errors to complete validation"))
		}
	}
	v := cel.NewValidator(ss, true, celconfig.PerCallLimit)
	var oldArg interface{}
	if oldObj != nil {
		oldArg = oldObj
	}
	celErrs, _ := v.Validate(context.Background(), nil, ss, newObj, oldArg, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// docsExample is the LiveMigration of docs/livemigration.md, as a user
// writes it.
const docsExample = `
apiVersion: livemigrate.io/v1alpha1
kind: LiveMigration
metadata: {name: db-to-member2, namespace: shop}
spec:
  workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: db}
  targetCluster: member2
  downtimeBudget: 2s
  bandwidthLimit: 200Mi
  preCopy: {convergenceThreshold: 64Mi, maxRounds: 5}
  timeouts: {preCopy: 30m, checkpointing: 5m, restoring: 10m}
  abort: false
`

// respelled is docsExample as a typed client writes it back after reading
// it: durations and quantities in their canonical spelling.
var respelled = strings.NewReplacer(
	"downtimeBudget: 2s", "downtimeBudget: 2s",
	"preCopy: 30m,", "preCopy: 30m0s,",
	"checkpointing: 5m,", "checkpointing: 5m0s,",
	"restoring: 10m}", "restoring: 10m0s}",
).Replace(docsExample)

func with(s, old, new string) string {
	if !strings.Contains(s, old) {
		panic("no " + old + " in the example")
	}
	return strings.Replace(s, old, new, 1)
}

// TestLiveMigrationAdmission checks what a kube-apiserver answers to
// LiveMigrations written as users write them: every spelling of a value
// is admitted, an update that keeps the values (in any spelling) is
// admitted, a change is refused, and every refusal names the field and what
// to write, without the error that names no field.
func TestLiveMigrationAdmission(t *testing.T) {
	cases := map[string]struct {
		old, new string
		want     []string // substrings of the errors; none means admitted
	}{
		"docs example":                     {new: docsExample},
		"docs example, respelled on write": {old: docsExample, new: respelled},
		"docs example, finalizer added": {old: docsExample,
			new: with(respelled, "namespace: shop}", "namespace: shop, finalizers: [livemigrate.io/live-migration]}")},
		"docs example, abort set": {old: docsExample, new: with(respelled, "abort: false", "abort: true")},
		"minute budget kept as 1m0s": {old: with(docsExample, "downtimeBudget: 2s", "downtimeBudget: 1m"),
			new: with(docsExample, "downtimeBudget: 2s", "downtimeBudget: 1m0s")},
		"fractional bandwidth kept as 512Mi": {old: with(docsExample, "200Mi", "0.5Gi"),
			new: with(docsExample, "200Mi", "512Mi")},
		"threshold kept as an integer": {old: docsExample,
			new: with(docsExample, "convergenceThreshold: 64Mi", "convergenceThreshold: 67108864")},
		"timeout 30m changed to 1h": {old: docsExample, new: with(docsExample, "preCopy: 30m,", "preCopy: 1h,"),
			want: []string{"spec.timeouts.preCopy: Invalid value: \"1h\": spec.timeouts is immutable"}},
		"timeout added": {old: docsExample, new: with(docsExample, "restoring: 10m}", "restoring: 10m, verifying: 1m}"),
			want: []string{"spec.timeouts is immutable"}},
		"timeout removed": {old: docsExample, new: with(docsExample, ", restoring: 10m}", "}"),
			want: []string{"spec.timeouts is immutable"}},
		"timeouts removed": {old: docsExample, new: with(docsExample, "  timeouts: {preCopy: 30m, checkpointing: 5m, restoring: 10m}\n", ""),
			want: []string{"spec.timeouts: Invalid value", "spec.timeouts is immutable"}},
		"budget changed": {old: docsExample, new: with(docsExample, "downtimeBudget: 2s", "downtimeBudget: 2500ms"),
			want: []string{"spec.downtimeBudget: Invalid value: \"2500ms\": spec.downtimeBudget is immutable"}},
		"bandwidth changed": {old: docsExample, new: with(docsExample, "200Mi", "0.5Gi"),
			want: []string{"spec.bandwidthLimit: Invalid value: \"0.5Gi\": spec.bandwidthLimit is immutable"}},
		"threshold changed": {old: docsExample, new: with(docsExample, "convergenceThreshold: 64Mi", "convergenceThreshold: 65Mi"),
			want: []string{"spec.preCopy.convergenceThreshold", "spec.preCopy is immutable"}},
		"max rounds changed": {old: docsExample, new: with(docsExample, "maxRounds: 5", "maxRounds: 6"),
			want: []string{"spec.preCopy.maxRounds", "spec.preCopy is immutable"}},
		"max rounds removed": {old: docsExample, new: with(docsExample, ", maxRounds: 5", ""),
			want: []string{"spec.preCopy.maxRounds", "spec.preCopy is immutable"}},

		"zero timeout": {new: with(docsExample, "checkpointing: 5m", "checkpointing: 0s"),
			want: []string{`spec.timeouts.checkpointing: Invalid value: "0s": must be a duration greater than zero, such as 30m or 90s`}},
		"negative timeout": {new: with(docsExample, "restoring: 10m", "restoring: -10m"),
			want: []string{`spec.timeouts.restoring: Invalid value: "-10m": must be a duration greater than zero`}},
		"timeout that is not a duration": {new: with(docsExample, "preCopy: 30m", "preCopy: banana"),
			want: []string{`spec.timeouts.preCopy: Invalid value: "banana": must be a duration greater than zero, such as 30m or 90s`}},
		"timeout without a unit": {new: with(docsExample, "preCopy: 30m", `preCopy: "30"`),
			want: []string{`spec.timeouts.preCopy: Invalid value: "30": must be a duration`}},
		"every timeout spelling": {new: with(docsExample, "{preCopy: 30m, checkpointing: 5m, restoring: 10m}",
			"{planning: 90s, preCopy: 1h30m, checkpointing: 1.5m, finalSync: 300000ms, transfer: 10m0s, rebinding: .5h, restoring: 2h, verifying: 1m30.5s}")},
		"zero budget": {new: with(docsExample, "downtimeBudget: 2s", "downtimeBudget: 0s"),
			want: []string{`spec.downtimeBudget: Invalid value: "0s": must be a duration greater than zero, such as 2s or 500ms`}},
		"negative budget": {new: with(docsExample, "downtimeBudget: 2s", "downtimeBudget: -1s"),
			want: []string{`spec.downtimeBudget: Invalid value: "-1s": must be a duration greater than zero`}},
		"timeout over a day": {new: with(docsExample, "restoring: 10m", "restoring: 24h1s"),
			want: []string{`spec.timeouts.restoring: Invalid value: "24h1s": must be a duration greater than zero, such as 30m or 90s, and at most 24h`}},
		"day timeout": {new: with(docsExample, "restoring: 10m", "restoring: 24h")},
		"budget over an hour": {new: with(docsExample, "downtimeBudget: 2s", "downtimeBudget: 61m"),
			want: []string{`spec.downtimeBudget: Invalid value: "61m": must be a duration greater than zero, such as 2s or 500ms, and at most 1h`}},
		"hour budget":          {new: with(docsExample, "downtimeBudget: 2s", "downtimeBudget: 1h")},
		"minute budget":        {new: with(docsExample, "downtimeBudget: 2s", "downtimeBudget: 1m")},
		"fractional bandwidth": {new: with(docsExample, "200Mi", "0.5Gi")},
		"zero bandwidth": {new: with(docsExample, "200Mi", "0"),
			want: []string{`spec.bandwidthLimit: Invalid value: 0: must be a quantity of bytes per second greater than zero, such as 200Mi`}},
		"negative bandwidth": {new: with(docsExample, "200Mi", "-1Mi"),
			want: []string{`spec.bandwidthLimit: Invalid value: "-1Mi": must be a quantity of bytes per second greater than zero`}},
		"bandwidth that is not a quantity": {new: with(docsExample, "200Mi", "fast"),
			want: []string{`spec.bandwidthLimit: Invalid value: "fast": must be a quantity of bytes per second greater than zero, such as 200Mi`}},
		"zero threshold": {new: with(docsExample, "convergenceThreshold: 64Mi", "convergenceThreshold: 0"),
			want: []string{`spec.preCopy.convergenceThreshold: Invalid value: 0: must be a quantity of bytes greater than zero, such as 64Mi`}},
		"negative threshold": {new: with(docsExample, "convergenceThreshold: 64Mi", "convergenceThreshold: -64Mi"),
			want: []string{`spec.preCopy.convergenceThreshold: Invalid value: "-64Mi": must be a quantity of bytes greater than zero`}},
		"zero max rounds": {new: with(docsExample, "maxRounds: 5", "maxRounds: 0"),
			want: []string{`spec.preCopy.maxRounds: Invalid value: 0: must be between 1 and 100`}},
		"unsupported kind": {new: with(docsExample, "kind: StatefulSet", "kind: DaemonSet"),
			want: []string{`spec.workloadRef.kind: Invalid value: "DaemonSet": must be Deployment or StatefulSet`}},
		"unsupported apiVersion": {new: with(docsExample, "apiVersion: apps/v1,", "apiVersion: apps/v2,"),
			want: []string{`spec.workloadRef.apiVersion: Invalid value: "apps/v2": must be apps/v1`}},
		"target name too long": {new: with(docsExample, "targetCluster: member2", "targetCluster: "+strings.Repeat("m", 254)),
			want: []string{`spec.targetCluster: Invalid value: "mmm`, lmv1alpha1.MsgTargetCluster}},
		"workload name too long": {new: with(docsExample, "name: db}", "name: "+strings.Repeat("d", 254)+"}"),
			want: []string{`spec.workloadRef.name: Invalid value: "ddd`, lmv1alpha1.MsgWorkloadName}},
		"no kind": {new: with(docsExample, "kind: StatefulSet, ", ""),
			want: []string{`spec.workloadRef.kind: Required value: the workload's kind is required: Deployment or StatefulSet`}},
		"no name": {new: with(docsExample, ", name: db}", "}"),
			want: []string{`spec.workloadRef.name: Required value: the workload's name is required`}},
		"no workload": {new: with(docsExample, "  workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: db}\n", ""),
			want: []string{`spec.workloadRef: Required value: the workload to migrate is required`}},
		"no spec": {new: "apiVersion: livemigrate.io/v1alpha1\nkind: LiveMigration\nmetadata: {name: m, namespace: ns}\n",
			want: []string{`spec: Required value: spec is required`}},
		"post-copy":     {new: with(docsExample, "abort: false", "memoryTransfer: PostCopy\n  abort: false")},
		"stop and copy": {new: with(docsExample, "abort: false", "memoryTransfer: StopAndCopy\n  abort: false")},
		"unknown memory transfer": {new: with(docsExample, "abort: false", "memoryTransfer: Lazy\n  abort: false"),
			want: []string{`spec.memoryTransfer: Invalid value: "Lazy": ` + lmv1alpha1.MsgMemoryTransfer}},
		"memory transfer changed": {old: docsExample, new: with(docsExample, "abort: false", "memoryTransfer: PostCopy\n  abort: false"),
			want: []string{`spec.memoryTransfer: Invalid value: "PostCopy": spec.memoryTransfer is immutable`}},
		"default memory transfer spelled out": {old: docsExample, new: with(respelled, "abort: false", "memoryTransfer: StopAndCopy\n  abort: false")},
		"several problems": {new: with(with(docsExample, "kind: StatefulSet", "kind: DaemonSet"), "preCopy: 30m", "preCopy: banana"),
			want: []string{`spec.workloadRef.kind: Invalid value: "DaemonSet"`, `spec.timeouts.preCopy: Invalid value: "banana"`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			errs := admit(t, tc.old, tc.new)
			if tc.old == "" {
				agreesWithValidate(t, tc.new, errs)
			}
			if len(tc.want) == 0 {
				if len(errs) > 0 {
					t.Fatalf("refused: %v", errs.ToAggregate())
				}
				return
			}
			if len(errs) == 0 {
				t.Fatalf("admitted, want refused with %q", tc.want)
			}
			got := errs.ToAggregate().Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("errors = %s\nwant %q", got, w)
				}
			}
			for _, e := range errs {
				if e.Field == "" || e.Field == "<nil>" {
					t.Errorf("error without a field: %v", e)
				}
			}
			if strings.Contains(got, blockingNoise) {
				t.Errorf("errors = %s, want no %q", got, blockingNoise)
			}
		})
	}
}

// agreesWithValidate checks that LiveMigrationSpec.Validate, which the
// webhook and the controller run, refuses the fields the CRD refused on a
// create (for a spec that decodes at all).
func agreesWithValidate(t *testing.T, manifest string, crdErrs field.ErrorList) {
	t.Helper()
	lm := &lmv1alpha1.LiveMigration{}
	if err := yaml.Unmarshal([]byte(manifest), lm); err != nil {
		return // the webhook reports what does not decode (see its tests)
	}
	want := map[string]bool{}
	for _, e := range crdErrs {
		f := e.Field
		if f == "spec" { // decoded, a missing spec is an empty one
			f = "spec.workloadRef"
		}
		want[f] = true
	}
	got := map[string]bool{}
	for _, e := range lm.Spec.Validate(field.NewPath("spec")) {
		got[e.Field] = true
	}
	for f := range want {
		if !got[f] {
			t.Errorf("the CRD refuses %s, LiveMigrationSpec.Validate does not", f)
		}
	}
	for f := range got {
		if !want[f] {
			t.Errorf("LiveMigrationSpec.Validate refuses %s, the CRD does not", f)
		}
	}
}

// TestCRDSaysWhatValidateSays checks that the CRD's CEL rules carry the
// messages the webhook and the controller use.
func TestCRDSaysWhatValidateSays(t *testing.T) {
	data, err := os.ReadFile(crdPath)
	if err != nil {
		t.Fatal(err)
	}
	if data, err = yaml.YAMLToJSON(data); err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{
		lmv1alpha1.MsgWorkloadRequired, lmv1alpha1.MsgWorkloadAPIVersion, lmv1alpha1.MsgWorkloadKind, lmv1alpha1.MsgWorkloadKindRequired,
		lmv1alpha1.MsgWorkloadName, lmv1alpha1.MsgWorkloadNameRequired, lmv1alpha1.MsgTimeout,
		lmv1alpha1.MsgDowntimeBudget, lmv1alpha1.MsgBandwidthLimit, lmv1alpha1.MsgConvergenceThreshold,
		lmv1alpha1.MsgMaxRounds, lmv1alpha1.MsgTargetCluster,
	} {
		if !strings.Contains(string(data), msg) {
			t.Errorf("the CRD lacks the message %q", msg)
		}
	}
}
