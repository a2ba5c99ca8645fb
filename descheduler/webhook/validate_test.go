package webhook

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	dtesting "github.com/livemigrate/livemigrate/descheduler/internal/testing"
	"github.com/livemigrate/livemigrate/test/builder"
)

func raw(t *testing.T, o runtime.Object) runtime.RawExtension {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return runtime.RawExtension{Raw: b}
}

func request(t *testing.T, op admissionv1.Operation, obj, old *lmv1alpha1.LiveMigration) admission.Request {
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: op, Namespace: obj.Namespace, Name: obj.Name, Object: raw(t, obj)}}
	if old != nil {
		req.OldObject = raw(t, old)
	}
	return req
}

func objects() []client.Object {
	active := dtesting.MakeLiveMigration("ns", "running", "busy").Target("b").Obj()
	active.Status.Phase = lmv1alpha1.PhasePreCopy
	done := dtesting.MakeLiveMigration("ns", "old", "app").Target("b").Obj()
	done.Status.Phase = lmv1alpha1.PhaseSucceeded
	sts := builder.MakeBinding("ns", "db").Resource("apps/v1", "StatefulSet").ScheduledOn(1, "a").Obj()
	sts.Name = "db-statefulset"
	return []client.Object{
		dtesting.Ready(builder.MakeCluster("a").Obj(), true),
		dtesting.Ready(builder.MakeCluster("b").Obj(), true),
		dtesting.Ready(builder.MakeCluster("down").Obj(), false),
		builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj(),
		builder.MakeBinding("ns", "busy").SingleCluster().ScheduledOn(1, "a").Obj(),
		builder.MakeBinding("ns", "spread").Divided().ScheduledOn(1, "a", "b").Obj(),
		sts, active, done,
	}
}

func TestValidateCreate(t *testing.T) {
	mk := dtesting.MakeLiveMigration
	cases := map[string]struct {
		lm   *lmv1alpha1.LiveMigration
		deny []string // substrings of the denial; empty means allowed
	}{
		"valid with target":       {lm: mk("ns", "m", "app").Target("b").Obj()},
		"valid without target":    {lm: mk("ns", "m", "app").Obj()},
		"previous one finished":   {lm: mk("ns", "m", "app").Target("b").Budget(time.Second).Obj()},
		"unknown kind":            {lm: mk("ns", "m", "app").Kind("DaemonSet").Obj(), deny: []string{`kind "DaemonSet" is not supported: use Deployment or StatefulSet`}},
		"target is source":        {lm: mk("ns", "m", "app").Target("a").Obj(), deny: []string{"spec.targetCluster a is where Deployment app already runs"}},
		"target not ready":        {lm: mk("ns", "m", "app").Target("down").Obj(), deny: []string{`"down" is not Ready`}},
		"target unknown":          {lm: mk("ns", "m", "app").Target("zz").Obj(), deny: []string{`"zz" is not a member cluster`}},
		"several clusters":        {lm: mk("ns", "m", "spread").Target("b").Obj(), deny: []string{"runs on 2 clusters (a, b)", "maxGroups: 1"}},
		"not propagated":          {lm: mk("ns", "m", "ghost").Target("b").Obj(), deny: []string{"not propagated by Karmada", "PropagationPolicy"}},
		"second active migration": {lm: mk("ns", "m2", "busy").Target("b").Obj(), deny: []string{"LiveMigration running is already migrating Deployment busy (phase PreCopy)"}},
		"statefulset":             {lm: mk("ns", "m", "db").Kind("StatefulSet").Target("b").Obj()},
		"non-positive budget":     {lm: mk("ns", "m", "app").Target("b").Budget(0).Obj(), deny: []string{"spec.downtimeBudget must be positive"}},
		"several problems":        {lm: mk("ns", "m", "ghost").Target("down").Obj(), deny: []string{"not propagated", "not Ready"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := dtesting.Scheme()
			v := New(fake.NewClientBuilder().WithScheme(s).WithObjects(objects()...).Build(), s)
			resp := v.Handle(context.Background(), request(t, admissionv1.Create, tc.lm, nil))
			if len(tc.deny) == 0 {
				if !resp.Allowed {
					t.Fatalf("denied: %s", resp.Result.Message)
				}
				return
			}
			if resp.Allowed {
				t.Fatalf("allowed, want denied with %q", tc.deny)
			}
			for _, want := range tc.deny {
				if !strings.Contains(resp.Result.Message, want) {
					t.Errorf("message %q lacks %q", resp.Result.Message, want)
				}
			}
		})
	}
}

func TestValidateUpdate(t *testing.T) {
	base := dtesting.MakeLiveMigration("ns", "m", "app").Target("b").Obj()
	cases := map[string]struct {
		old, new *lmv1alpha1.LiveMigration
		allowed  bool
		msg      string
	}{
		"set abort":         {base, dtesting.MakeLiveMigration("ns", "m", "app").Target("b").Abort().Obj(), true, ""},
		"metadata only":     {base, base.DeepCopy(), true, ""},
		"unset abort":       {dtesting.MakeLiveMigration("ns", "m", "app").Target("b").Abort().Obj(), base, false, "cannot be unset"},
		"change target":     {base, dtesting.MakeLiveMigration("ns", "m", "app").Target("c").Obj(), false, "only spec.abort may change"},
		"change the budget": {base, dtesting.MakeLiveMigration("ns", "m", "app").Target("b").Budget(time.Second).Obj(), false, "only spec.abort may change"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := dtesting.Scheme()
			v := New(fake.NewClientBuilder().WithScheme(s).Build(), s)
			resp := v.Handle(context.Background(), request(t, admissionv1.Update, tc.new, tc.old))
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (%s)", resp.Allowed, tc.allowed, resp.Result.Message)
			}
			if !tc.allowed && !strings.Contains(resp.Result.Message, tc.msg) {
				t.Errorf("message %q lacks %q", resp.Result.Message, tc.msg)
			}
		})
	}
}

func TestUndecodableRequest(t *testing.T) {
	s := dtesting.Scheme()
	v := New(fake.NewClientBuilder().WithScheme(s).Build(), s)
	resp := v.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte("{not json")}}})
	if resp.Allowed || resp.Result.Code != 400 {
		t.Fatalf("resp = %+v, want a 400 error", resp.Result)
	}
}
