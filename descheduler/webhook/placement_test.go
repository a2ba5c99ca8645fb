package webhook

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/builder"
)

func bindingRaw(t *testing.T, rb *workv1alpha2.ResourceBinding) runtime.RawExtension {
	t.Helper()
	b, err := json.Marshal(rb)
	if err != nil {
		t.Fatal(err)
	}
	// A field these types do not know must survive the hold.
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["spec"].(map[string]any)["futureField"] = "kept"
	b, _ = json.Marshal(m)
	return runtime.RawExtension{Raw: b}
}

func TestPlacementHold(t *testing.T) {
	bind := func(clusters ...string) *workv1alpha2.ResourceBinding {
		rb := builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, clusters...).Obj()
		rb.Annotations = map[string]string{policyv1alpha1.PropagationPolicyNameAnnotation: "pp", policyv1alpha1.PropagationPolicyNamespaceAnnotation: "ns"}
		return rb
	}
	rebound := bind("b")
	rebound.Spec.GracefulEvictionTasks = []workv1alpha2.GracefulEvictionTask{{FromCluster: "a", Producer: "livemigrate"}}
	rollingBack := builder.MakeLiveMigration("ns", "m", "app").Clusters("a", "b").Obj()
	rollingBack.Status.Phase = lmv1alpha1.PhaseRollingBack
	for _, tc := range []struct {
		name     string
		strategy string
		old, cur *workv1alpha2.ResourceBinding
		objs     []client.Object
		held     string // the recorded result; "" = admitted unchanged
	}{
		{name: "opted in, moved by the scheduler", strategy: "LiveMigrate", old: bind("a"), cur: bind("b"), held: `[{"name":"b","replicas":1}]`},
		{name: "opted in, no cluster fits", strategy: "LiveMigrateIfPossible", old: bind("a"), cur: bind(), held: `[]`},
		{name: "not opted in", strategy: "None", old: bind("a"), cur: bind("b")},
		{name: "malformed policy is not opted in", strategy: "Live", old: bind("a"), cur: bind("b")},
		{name: "a live migration's rebinding", strategy: "LiveMigrate", old: bind("a"), cur: rebound},
		{name: "a live migration's rollback", strategy: "LiveMigrate", old: bind("b"), cur: bind("a"), objs: []client.Object{rollingBack}},
		{name: "not a move", strategy: "LiveMigrate", old: bind("a"), cur: bind("a", "b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := append([]client.Object{
				&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app"}},
				builder.MakePolicy("ns", "pp", policy.AnnotationEvictionStrategy, tc.strategy),
			}, tc.objs...)
			c := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(objs...).Build()
			h := PlacementHold{Client: c, Policies: &policy.Resolver{Client: c}}
			req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: admissionv1.Update, Namespace: "ns", Name: tc.cur.Name,
				Kind:   metav1.GroupVersionKind{Group: "work.karmada.io", Version: "v1alpha2", Kind: "ResourceBinding"},
				Object: bindingRaw(t, tc.cur), OldObject: bindingRaw(t, tc.old)}}
			resp := h.Handle(context.Background(), req)
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			if tc.held == "" {
				if len(resp.Patches) != 0 {
					t.Errorf("patched, want admitted as written: %+v", resp.Patches)
				}
				return
			}
			var clusters, annotation bool
			for _, p := range resp.Patches {
				switch {
				case strings.HasPrefix(p.Path, "/spec/clusters"):
					clusters = true
				case p.Path == "/metadata/annotations/livemigrate.io~1scheduled-clusters":
					annotation = true
					if p.Value != tc.held {
						t.Errorf("held result = %v, want %s", p.Value, tc.held)
					}
				case strings.Contains(p.Path, "futureField"):
					t.Errorf("an unknown field was touched: %+v", p)
				}
			}
			if !clusters || !annotation {
				t.Errorf("patches %+v: want spec.clusters restored and the result recorded", resp.Patches)
			}
			// Applying the patch gives back the old clusters.
			ops, _ := json.Marshal(resp.Patches)
			patch, err := jsonpatch.DecodePatch(ops)
			if err != nil {
				t.Fatalf("decoding the patch: %v", err)
			}
			out, err := patch.Apply(req.Object.Raw)
			if err != nil {
				t.Fatalf("applying the patch: %v", err)
			}
			got := &workv1alpha2.ResourceBinding{}
			if err := json.Unmarshal(out, got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.old.Spec.Clusters, got.Spec.Clusters); diff != "" {
				t.Errorf("spec.clusters after the hold (-old +got):\n%s", diff)
			}
			if !strings.Contains(string(out), `"futureField":"kept"`) {
				t.Errorf("an unknown field was lost: %s", out)
			}
			if len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "opted into live migration") {
				t.Errorf("warnings = %q", resp.Warnings)
			}
		})
	}
}
