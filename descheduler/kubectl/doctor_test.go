package kubectl

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/livemigrate/livemigrate/agent/report"
)

func TestRuntimeSupport(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    Status
	}{
		{"cri-o://1.33.2", StatusOK},
		{"containerd://2.1.0", StatusOK},
		{"containerd://v2.0.0", StatusOK},
		{"containerd://1.7.27", StatusFail},
		{"docker://27.0.1", StatusWarn},
		{"kwok-v0.8.0", StatusWarn},
		{"containerd://x", StatusWarn},
	} {
		if got, _ := runtimeSupport(tc.version); got != tc.want {
			t.Errorf("runtimeSupport(%q) = %s, want %s", tc.version, got, tc.want)
		}
	}
}

// A node's agent passes with a report renewed within its duration, and
// fails, saying where to look, when the report is stale or missing.
func TestDoctorNodeReport(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	lease := func(node string, renewed time.Time, rt string) *coordinationv1.Lease {
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: report.LeaseName(node), Namespace: "livemigrate-system", Annotations: map[string]string{
				report.AnnotationRuntime: rt, report.AnnotationKernel: "6.1.0", report.AnnotationArchitecture: "amd64", report.AnnotationFreezer: "v2",
			}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To[int32](45), RenewTime: &metav1.MicroTime{Time: renewed}},
		}
	}
	c := fake.NewClientBuilder().WithScheme(DoctorScheme()).WithObjects(
		lease("fresh", now.Add(-10*time.Second), "cri-o://1.33.2"),
		lease("stale", now.Add(-2*time.Minute), "cri-o://1.33.2"),
		lease("old-containerd", now.Add(-time.Second), "containerd://1.7.2"),
		withAPI(lease("api-ok", now.Add(-time.Second), "cri-o://1.33.2"), report.CheckpointAPIOK),
		withAPI(lease("api-off", now.Add(-time.Second), "cri-o://1.33.2"), "the kubelet has no checkpoint API: enable its ContainerCheckpoint feature gate"),
		withCRIU(lease("criu-ok", now.Add(-time.Second), "cri-o://1.33.2"), "4.2.1", report.CRIUCheckOK),
		withCRIU(lease("criu-broken", now.Add(-time.Second), "cri-o://1.33.2"), "3.17.1", "criu check failed (exit status 1): kerndat_vdso_fill_symtable failed"),
		withRegistries(withAPI(lease("registry-ok", now.Add(-time.Second), "cri-o://1.33.2"), report.CheckpointAPIOK), `{"registry.eu:5000":"ok","registry.us":"ok"}`),
		withRegistries(withAPI(lease("registry-down", now.Add(-time.Second), "cri-o://1.33.2"), report.CheckpointAPIOK), `{"registry.eu:5000":"unreachable: dial tcp 10.0.0.9:5000: connect: connection refused","registry.us":"ok"}`),
		withRegistries(lease("registry-garbled", now.Add(-time.Second), "cri-o://1.33.2"), `{`),
	).Build()
	d := &Doctor{Now: func() time.Time { return now }, AgentNamespace: "livemigrate-system"}
	for _, tc := range []struct {
		node       string
		want       Status
		detail     string
		fixContain string
	}{
		{"fresh", StatusOK, "runtime cri-o://1.33.2, kernel 6.1.0, amd64, freezer v2", ""},
		{"stale", StatusFail, `the agent is not running: its report held by "stale", last renewed 2m0s ago (duration 45s)`, "--field-selector spec.nodeName=stale"},
		{"missing", StatusFail, "the agent never reported", "--field-selector spec.nodeName=missing"},
		{"old-containerd", StatusFail, "containerd before 2.0 cannot restore", "containerd ≥ 2.0"},
		{"api-ok", StatusOK, "freezer v2, checkpoint API ok", ""},
		{"api-off", StatusFail, "freezer v2: the kubelet has no checkpoint API: enable its ContainerCheckpoint feature gate", "POST /checkpoint/"},
		{"criu-ok", StatusOK, "freezer v2, CRIU 4.2.1", ""},
		{"criu-broken", StatusFail, "freezer v2, CRIU 3.17.1: criu check failed (exit status 1): kerndat_vdso_fill_symtable failed", "criu check as root"},
		{"registry-ok", StatusOK, "checkpoint API ok, registries registry.eu:5000,registry.us reachable", ""},
		{"registry-down", StatusFail, "checkpoint API ok: registry registry.eu:5000 unreachable: dial tcp 10.0.0.9:5000: connect: connection refused", "make them reachable from registry-down"},
		{"registry-garbled", StatusFail, "unreadable registry report", "same version"},
	} {
		archs := map[string][]string{}
		got := d.node(context.Background(), c, "member1", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: tc.node}}, archs)
		if got.Status != tc.want || !strings.Contains(got.Detail, tc.detail) || !strings.Contains(got.Fix, tc.fixContain) {
			t.Errorf("node %s: got %+v, want %s with detail %q and fix containing %q", tc.node, got, tc.want, tc.detail, tc.fixContain)
		}
	}
}

func withAPI(l *coordinationv1.Lease, api string) *coordinationv1.Lease {
	l.Annotations[report.AnnotationCheckpointAPI] = api
	return l
}

func withCRIU(l *coordinationv1.Lease, version, check string) *coordinationv1.Lease {
	l.Annotations[report.AnnotationCRIUVersion] = version
	l.Annotations[report.AnnotationCRIUCheck] = check
	return l
}

func withRegistries(l *coordinationv1.Lease, regs string) *coordinationv1.Lease {
	l.Annotations[report.AnnotationRegistries] = regs
	return l
}

// The descheduler webhook check passes only when the webhook answered the
// dry-run LiveMigration (admitted or denied it): a refusal by RBAC or any
// other error before the webhook is called is a Warn, a failed call a Fail.
func TestDoctorDeschedulerWebhook(t *testing.T) {
	gr := schema.GroupResource{Group: "livemigrate.io", Resource: "livemigrations"}
	for _, tc := range []struct {
		name   string
		err    error
		want   Status
		detail string
		fix    string
	}{
		{name: "admitted", want: StatusOK, detail: "answers a dry-run LiveMigration"},
		{name: "denied by the webhook", err: &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 422, Reason: metav1.StatusReasonInvalid,
			Message: `admission webhook "livemigrations.livemigrate.io" denied the request: LiveMigration.livemigrate.io "livemigrate-doctor" is invalid: spec.workloadRef.name: Invalid value: "livemigrate-doctor": StatefulSet default/livemigrate-doctor is not propagated by Karmada`}},
			want: StatusOK, detail: "answers a dry-run LiveMigration"},
		{name: "forbidden by RBAC", err: apierrors.NewForbidden(gr, "", errors.New(`User "alice" cannot create resource "livemigrations" in API group "livemigrate.io" in the namespace "default"`)),
			want: StatusWarn, detail: `User "alice" cannot create resource "livemigrations"`, fix: "rights to create LiveMigrations"},
		{name: "invalid before the webhook", err: apierrors.NewInvalid(schema.GroupKind{Group: "livemigrate.io", Kind: "LiveMigration"}, "livemigrate-doctor", nil),
			want: StatusWarn, fix: "rights to create LiveMigrations"},
		{name: "failed calling the webhook", err: apierrors.NewInternalError(errors.New(`failed calling webhook "livemigrations.livemigrate.io": failed to call webhook: Post "https://127.0.0.1:9443/validate": dial tcp 127.0.0.1:9443: connect: connection refused`)),
			want: StatusFail, detail: "failed calling webhook", fix: "the descheduler is not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(DoctorScheme()).
				WithObjects(&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-descheduler"}}).
				WithInterceptorFuncs(interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error { return tc.err }}).
				Build()
			got := (&Doctor{Karmada: c}).deschedulerWebhook(context.Background())
			if got.Status != tc.want || !strings.Contains(got.Detail, tc.detail) || !strings.Contains(got.Fix, tc.fix) {
				t.Errorf("got %+v, want %s with detail %q and fix containing %q", got, tc.want, tc.detail, tc.fix)
			}
		})
	}
}
