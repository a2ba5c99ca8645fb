package webhook

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/internal/features"
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
	active := builder.MakeLiveMigration("ns", "running", "busy").Target("b").Obj()
	active.Status.Phase = lmv1alpha1.PhasePreCopy
	done := builder.MakeLiveMigration("ns", "old", "app").Target("b").Obj()
	done.Status.Phase = lmv1alpha1.PhaseSucceeded
	// Never started, never will: stored with a spec the controller fails.
	invalid := builder.MakeLiveMigration("ns", "stuck", "app").Target("b").Timeout(lmv1alpha1.PhasePreCopy, 0).Obj()
	// Not started yet, valid: it will run.
	queued := builder.MakeLiveMigration("ns", "queued", "waiting").Target("b").Obj()
	sts := builder.MakeBinding("ns", "db").Resource("apps/v1", "StatefulSet").ScheduledOn(1, "a").Obj()
	sts.Name = "db-statefulset"
	return []client.Object{
		builder.Ready(builder.MakeCluster("a").Obj(), true),
		builder.Ready(builder.MakeCluster("b").Obj(), true),
		builder.Ready(builder.MakeCluster("down").Obj(), false),
		builder.MakeBinding("ns", "app").SingleCluster().ScheduledOn(1, "a").Obj(),
		builder.MakeBinding("ns", "busy").SingleCluster().ScheduledOn(1, "a").Obj(),
		builder.MakeBinding("ns", "waiting").SingleCluster().ScheduledOn(1, "a").Obj(),
		builder.MakeBinding("ns", "spread").Divided().ScheduledOn(1, "a", "b").Obj(),
		sts, active, done, invalid, queued,
	}
}

func TestValidateCreate(t *testing.T) {
	mk := builder.MakeLiveMigration
	cases := map[string]struct {
		lm   *lmv1alpha1.LiveMigration
		deny []string // substrings of the denial; empty means allowed
	}{
		"valid with target":         {lm: mk("ns", "m", "app").Target("b").Obj()},
		"valid without target":      {lm: mk("ns", "m", "app").Obj()},
		"previous one finished":     {lm: mk("ns", "m", "app").Target("b").Budget(time.Second).Obj()},
		"unknown kind":              {lm: mk("ns", "m", "app").Kind("DaemonSet").Obj(), deny: []string{`spec.workloadRef.kind: Invalid value: "DaemonSet": must be Deployment or StatefulSet`}},
		"target is source":          {lm: mk("ns", "m", "app").Target("a").Obj(), deny: []string{`spec.targetCluster: Invalid value: "a": Deployment app already runs on a: choose another cluster`}},
		"target not ready":          {lm: mk("ns", "m", "app").Target("down").Obj(), deny: []string{`spec.targetCluster: Invalid value: "down": is not Ready`}},
		"target unknown":            {lm: mk("ns", "m", "app").Target("zz").Obj(), deny: []string{`spec.targetCluster: Invalid value: "zz": is not a member cluster`}},
		"several clusters":          {lm: mk("ns", "m", "spread").Target("b").Obj(), deny: []string{`spec.workloadRef.name: Invalid value: "spread"`, "runs on 2 clusters (a, b)", "maxGroups: 1"}},
		"not propagated":            {lm: mk("ns", "m", "ghost").Target("b").Obj(), deny: []string{`spec.workloadRef.name: Invalid value: "ghost"`, "not propagated by Karmada", "PropagationPolicy"}},
		"second active migration":   {lm: mk("ns", "m2", "busy").Target("b").Obj(), deny: []string{"LiveMigration running is already migrating Deployment busy (phase PreCopy)"}},
		"second, first not started": {lm: mk("ns", "m2", "waiting").Target("b").Obj(), deny: []string{"LiveMigration queued is already migrating Deployment waiting (phase Pending)"}},
		"statefulset":               {lm: mk("ns", "m", "db").Kind("StatefulSet").Target("b").Obj()},
		"zero budget":               {lm: mk("ns", "m", "app").Target("b").Budget(0).Obj(), deny: []string{`spec.downtimeBudget: Invalid value: "0s": ` + lmv1alpha1.MsgDowntimeBudget}},
		"negative timeout":          {lm: mk("ns", "m", "app").Target("b").Timeout(lmv1alpha1.PhaseRestoring, -time.Second).Obj(), deny: []string{`spec.timeouts.restoring: Invalid value: "-1s": ` + lmv1alpha1.MsgTimeout}},
		"timeout over a day":        {lm: mk("ns", "m", "app").Target("b").Timeout(lmv1alpha1.PhaseRestoring, 25*time.Hour).Obj(), deny: []string{`spec.timeouts.restoring: Invalid value: "25h0m0s": ` + lmv1alpha1.MsgTimeout}},
		"budget over an hour":       {lm: mk("ns", "m", "app").Target("b").Budget(2 * time.Hour).Obj(), deny: []string{`spec.downtimeBudget: Invalid value: "2h0m0s": ` + lmv1alpha1.MsgDowntimeBudget}},
		"zero bandwidth":            {lm: mk("ns", "m", "app").Target("b").Bandwidth("0").Obj(), deny: []string{`spec.bandwidthLimit: Invalid value: "0": ` + lmv1alpha1.MsgBandwidthLimit}},
		"fractional bandwidth":      {lm: mk("ns", "m", "app").Target("b").Bandwidth("0.5Gi").Obj()},
		"several problems":          {lm: mk("ns", "m", "ghost").Target("down").Obj(), deny: []string{"not propagated", "not Ready"}},
		"stop and copy":             {lm: mk("ns", "m", "app").Target("b").MemoryTransfer(lmv1alpha1.MemoryTransferStopAndCopy).Obj()},
		"post-copy, gate off":       {lm: mk("ns", "m", "app").Target("b").MemoryTransfer(lmv1alpha1.MemoryTransferPostCopy).Obj(), deny: []string{`spec.memoryTransfer: Forbidden: PostCopy needs the feature gate PostCopyMigration, which is off`, "--feature-gates=PostCopyMigration=true"}},
		"unknown memory transfer":   {lm: mk("ns", "m", "app").Target("b").MemoryTransfer("PreCopy").Obj(), deny: []string{`spec.memoryTransfer: Invalid value: "PreCopy": ` + lmv1alpha1.MsgMemoryTransfer}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := builder.Scheme()
			v := New(fake.NewClientBuilder().WithScheme(s).WithObjects(objects()...).Build(), s, nil)
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
			checkDenial(t, resp, tc.deny...)
		})
	}
}

// checkDenial checks that resp refuses with an Invalid status (422) whose
// message has each of want and whose causes each name a field.
func checkDenial(t *testing.T, resp admission.Response, want ...string) {
	t.Helper()
	if resp.Allowed {
		t.Fatalf("allowed, want denied with %q", want)
	}
	if resp.Result.Code != 422 || resp.Result.Reason != metav1.StatusReasonInvalid {
		t.Errorf("status %d %s, want 422 Invalid", resp.Result.Code, resp.Result.Reason)
	}
	for _, w := range want {
		if !strings.Contains(resp.Result.Message, w) {
			t.Errorf("message %q lacks %q", resp.Result.Message, w)
		}
	}
	if resp.Result.Details == nil || len(resp.Result.Details.Causes) == 0 {
		t.Fatalf("no causes in %+v", resp.Result)
	}
	for _, c := range resp.Result.Details.Causes {
		if !strings.HasPrefix(c.Field, "spec") {
			t.Errorf("cause %+v names no field of the spec", c)
		}
	}
}

// rawRequest is an admission request of objects as a user writes them.
func rawRequest(op admissionv1.Operation, obj, old string) admission.Request {
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: op, Namespace: "ns", Name: "m",
		Object: runtime.RawExtension{Raw: []byte(obj)}}}
	if old != "" {
		req.OldObject = runtime.RawExtension{Raw: []byte(old)}
	}
	return req
}

func manifest(spec string) string {
	return `{"apiVersion":"livemigrate.io/v1alpha1","kind":"LiveMigration","metadata":{"name":"m","namespace":"ns"},` +
		`"spec":{"workloadRef":{"kind":"Deployment","name":"app"},"targetCluster":"b"` + spec + `}}`
}

// TestValidateWrittenValues checks values as users write them: every
// spelling the API accepts is admitted, and what does not parse is refused
// with the field named and what to write, not the parser's error alone.
func TestValidateWrittenValues(t *testing.T) {
	cases := map[string]struct {
		spec string
		deny []string
	}{
		"docs example":             {spec: `,"downtimeBudget":"2s","bandwidthLimit":"200Mi","preCopy":{"convergenceThreshold":"64Mi","maxRounds":5},"timeouts":{"preCopy":"30m","checkpointing":"5m","restoring":"10m"}`},
		"minute budget":            {spec: `,"downtimeBudget":"1m"`},
		"threshold as a number":    {spec: `,"preCopy":{"convergenceThreshold":67108864}`},
		"bandwidth as a number":    {spec: `,"bandwidthLimit":1000000`},
		"timeout not a duration":   {spec: `,"timeouts":{"preCopy":"banana"}`, deny: []string{`spec.timeouts.preCopy: Invalid value: "banana": ` + lmv1alpha1.MsgTimeout}},
		"timeout as a number":      {spec: `,"timeouts":{"verifying":30}`, deny: []string{`spec.timeouts.verifying: Invalid value: 30: ` + lmv1alpha1.MsgTimeout}},
		"budget not a duration":    {spec: `,"downtimeBudget":"2 seconds"`, deny: []string{`spec.downtimeBudget: Invalid value: "2 seconds": ` + lmv1alpha1.MsgDowntimeBudget}},
		"bandwidth not a quantity": {spec: `,"bandwidthLimit":"fast"`, deny: []string{`spec.bandwidthLimit: Invalid value: "fast": ` + lmv1alpha1.MsgBandwidthLimit}},
		"zero threshold":           {spec: `,"preCopy":{"convergenceThreshold":"0"}`, deny: []string{`spec.preCopy.convergenceThreshold: Invalid value: "0": ` + lmv1alpha1.MsgConvergenceThreshold}},
		"zero rounds":              {spec: `,"preCopy":{"maxRounds":0}`, deny: []string{`spec.preCopy.maxRounds: Invalid value: 0: ` + lmv1alpha1.MsgMaxRounds}},
		"two bad values": {spec: `,"downtimeBudget":"soon","timeouts":{"restoring":"banana"}`,
			deny: []string{`spec.downtimeBudget: Invalid value: "soon"`, `spec.timeouts.restoring: Invalid value: "banana"`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := builder.Scheme()
			v := New(fake.NewClientBuilder().WithScheme(s).WithObjects(objects()...).Build(), s, nil)
			resp := v.Handle(context.Background(), rawRequest(admissionv1.Create, manifest(tc.spec), ""))
			if len(tc.deny) == 0 {
				if !resp.Allowed {
					t.Fatalf("denied: %s", resp.Result.Message)
				}
				return
			}
			checkDenial(t, resp, tc.deny...)
			if strings.Contains(resp.Result.Message, "time: invalid duration") {
				t.Errorf("message %q is the parser's", resp.Result.Message)
			}
		})
	}
}

// TestValidateWrittenUpdates checks updates as clients send them: a typed
// client respells the values it read, which is no change; a metadata
// change of an object stored with a value that does not parse is allowed,
// so that it can be cleaned up.
func TestValidateWrittenUpdates(t *testing.T) {
	docs := `,"downtimeBudget":"1m","bandwidthLimit":"0.5Gi","timeouts":{"preCopy":"30m","checkpointing":"5m","restoring":"10m"}`
	respelled := `,"downtimeBudget":"1m0s","bandwidthLimit":"512Mi","timeouts":{"preCopy":"30m0s","checkpointing":"5m0s","restoring":"10m0s"}`
	cases := map[string]struct {
		old, new string
		deny     []string
	}{
		"respelled":       {old: manifest(docs), new: manifest(respelled)},
		"respelled abort": {old: manifest(docs), new: manifest(respelled + `,"abort":true`)},
		"30m to 1h": {old: manifest(docs), new: manifest(strings.Replace(docs, `"preCopy":"30m"`, `"preCopy":"1h"`, 1)),
			deny: []string{"spec.timeouts: Forbidden: only spec.abort may change after creation"}},
		"bandwidth 0.5Gi to 1Gi": {old: manifest(docs), new: manifest(strings.Replace(docs, "0.5Gi", "1Gi", 1)),
			deny: []string{"spec.bandwidthLimit: Forbidden: only spec.abort may change"}},
		"stored unparsable, metadata changed": {old: manifest(`,"timeouts":{"preCopy":"banana"}`),
			new: strings.Replace(manifest(`,"timeouts":{"preCopy":"banana"}`), `"namespace":"ns"`, `"namespace":"ns","finalizers":["x"]`, 1)},
		"stored unparsable, changed": {old: manifest(`,"timeouts":{"preCopy":"banana"}`), new: manifest(`,"timeouts":{"preCopy":"1h"}`),
			deny: []string{"spec.timeouts: Forbidden: only spec.abort may change"}},
		"stored zero, metadata changed": {old: manifest(`,"downtimeBudget":"0s"`),
			new: strings.Replace(manifest(`,"downtimeBudget":"0s"`), `"namespace":"ns"`, `"namespace":"ns","finalizers":["x"]`, 1)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := builder.Scheme()
			v := New(fake.NewClientBuilder().WithScheme(s).Build(), s, nil)
			resp := v.Handle(context.Background(), rawRequest(admissionv1.Update, tc.new, tc.old))
			if len(tc.deny) == 0 {
				if !resp.Allowed {
					t.Fatalf("denied: %s", resp.Result.Message)
				}
				return
			}
			checkDenial(t, resp, tc.deny...)
		})
	}
}

func TestPostCopyGateOn(t *testing.T) {
	gates := features.New()
	if err := gates.SetFromMap(map[string]bool{string(features.PostCopyMigration): true}); err != nil {
		t.Fatal(err)
	}
	s := builder.Scheme()
	v := New(fake.NewClientBuilder().WithScheme(s).WithObjects(objects()...).Build(), s, gates)
	lm := builder.MakeLiveMigration("ns", "m", "app").Target("b").MemoryTransfer(lmv1alpha1.MemoryTransferPostCopy).Obj()
	if resp := v.Handle(context.Background(), request(t, admissionv1.Create, lm, nil)); !resp.Allowed {
		t.Fatalf("PostCopy with the gate on: denied: %s", resp.Result.Message)
	}
}

func TestValidateUpdate(t *testing.T) {
	base := builder.MakeLiveMigration("ns", "m", "app").Target("b").Obj()
	cases := map[string]struct {
		old, new *lmv1alpha1.LiveMigration
		allowed  bool
		msg      string
	}{
		"set abort":         {base, builder.MakeLiveMigration("ns", "m", "app").Target("b").Abort().Obj(), true, ""},
		"metadata only":     {base, base.DeepCopy(), true, ""},
		"unset abort":       {builder.MakeLiveMigration("ns", "m", "app").Target("b").Abort().Obj(), base, false, "cannot be unset"},
		"change target":     {base, builder.MakeLiveMigration("ns", "m", "app").Target("c").Obj(), false, "only spec.abort may change"},
		"change the budget": {base, builder.MakeLiveMigration("ns", "m", "app").Target("b").Budget(time.Second).Obj(), false, "only spec.abort may change"},
		"change the memory transfer": {base, builder.MakeLiveMigration("ns", "m", "app").Target("b").MemoryTransfer(lmv1alpha1.MemoryTransferPostCopy).Obj(), false,
			"spec.memoryTransfer: Forbidden: only spec.abort may change"},
		"spell out the default": {base, builder.MakeLiveMigration("ns", "m", "app").Target("b").MemoryTransfer(lmv1alpha1.MemoryTransferStopAndCopy).Obj(), true, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := builder.Scheme()
			v := New(fake.NewClientBuilder().WithScheme(s).Build(), s, nil)
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
	s := builder.Scheme()
	v := New(fake.NewClientBuilder().WithScheme(s).Build(), s, nil)
	resp := v.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte("{not json")}}})
	if resp.Allowed || resp.Result.Code != 400 {
		t.Fatalf("resp = %+v, want a 400 error", resp.Result)
	}
}
