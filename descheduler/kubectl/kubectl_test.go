package kubectl

import (
	"bytes"
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/builder"
)

func TestParseWorkload(t *testing.T) {
	cases := []struct {
		arg     string
		want    lmv1alpha1.WorkloadReference
		wantErr string
	}{
		{arg: "deployment/web", want: lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}},
		{arg: "deploy/web", want: lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}},
		{arg: "StatefulSet/db", want: lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db"}},
		{arg: "sts/db", want: lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db"}},
		{arg: "statefulsets.apps/db", want: lmv1alpha1.WorkloadReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db"}},
		{arg: "db", wantErr: "is not <kind>/<name>: write e.g. deployment/web"},
		{arg: "deployment/", wantErr: "is not <kind>/<name>"},
		{arg: "a/b/c", wantErr: "is not <kind>/<name>"},
		{arg: "daemonset/x", wantErr: `kind "daemonset" cannot be live-migrated`},
	}
	for _, tc := range cases {
		t.Run(tc.arg, func(t *testing.T) {
			got, err := ParseWorkload(tc.arg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMissingArgumentShowsUsage(t *testing.T) {
	var out bytes.Buffer
	err := run(t, newTestOptions(fake.NewClientBuilder().WithScheme(Scheme()).Build(), &out), "move")
	if err == nil || !strings.Contains(err.Error(), "usage: kubectl livemigrate move <kind>/<name> [--to CLUSTER] [--wait]") {
		t.Errorf("err = %v", err)
	}
}

func TestMoveFlagsBuild(t *testing.T) {
	f := &moveFlags{to: "b", budget: 2 * time.Second, bwLimit: "200Mi"}
	lm, err := f.build("sts/db")
	if err != nil {
		t.Fatal(err)
	}
	if lm.GenerateName != "db-" || lm.Spec.TargetCluster != "b" || lm.Spec.DowntimeBudget.Duration != 2*time.Second || lm.Spec.BandwidthLimit.Value() != 200<<20 {
		t.Errorf("built %+v", lm)
	}
	if _, err := (&moveFlags{bwLimit: "fast"}).build("sts/db"); err == nil || !strings.Contains(err.Error(), "e.g. 200Mi") {
		t.Errorf("bad bandwidth: err = %v", err)
	}
}

func status(phase lmv1alpha1.LiveMigrationPhase, mem, pre, final int64) *lmv1alpha1.LiveMigration {
	lm := builder.MakeLiveMigration("ns", "mig", "db").Kind("StatefulSet").Obj()
	lm.Status = lmv1alpha1.LiveMigrationStatus{Phase: phase, SourceCluster: "a", TargetCluster: "b",
		Bytes: lmv1alpha1.TransferredBytes{Memory: mem, VolumePreCopy: pre, FinalDelta: final}}
	return lm
}

func TestProgressPlain(t *testing.T) {
	var out bytes.Buffer
	p := &Progress{Out: &out}
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.Update(status(lmv1alpha1.PhasePreCopy, 0, 0, 0), t1)
	p.Update(status(lmv1alpha1.PhasePreCopy, 0, 0, 0), t1.Add(time.Second)) // unchanged: no line
	p.Update(status(lmv1alpha1.PhasePreCopy, 0, 100<<20, 0), t1.Add(2*time.Second))
	done := status(lmv1alpha1.PhaseSucceeded, 10<<20, 100<<20, 1<<20)
	done.Status.Downtime = &metav1.Duration{Duration: 1234 * time.Millisecond}
	p.Update(done, t1.Add(3*time.Second))
	p.Finish(done)
	want := `PreCopy       a→b  0B
PreCopy       a→b  100.0MiB  50.0MiB/s
Succeeded     a→b  111.0MiB  11.0MiB/s  downtime 1.234s
livemigration mig succeeded: StatefulSet db moved a → b, downtime 1.234s, 111.0MiB moved (memory 10.0MiB, volumes 100.0MiB + final delta 1.0MiB)
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("plain output (-want +got):\n%s", diff)
	}
	if strings.Contains(out.String(), "\r") || strings.Contains(out.String(), "\033") {
		t.Errorf("plain output holds terminal control codes")
	}
}

func TestProgressTerminal(t *testing.T) {
	var out bytes.Buffer
	p := &Progress{Out: &out, Terminal: true, Width: 10}
	t1 := time.Now()
	p.Update(status(lmv1alpha1.PhasePlanning, 0, 0, 0), t1)
	p.Update(status(lmv1alpha1.PhaseRebinding, 5, 0, 0), t1.Add(time.Second))
	got := out.String()
	for _, want := range []string{
		"\r\033[K[█░░░░░░░░░]  10% Planning",
		"\r\033[K[████░░░░░░]  40% Rebinding",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output %q lacks %q", got, want)
		}
	}
	if strings.Count(got, "\n") != 0 {
		t.Errorf("terminal output should redraw one line, got newlines: %q", got)
	}
	failed := status(lmv1alpha1.PhaseFailed, 0, 0, 0)
	failed.Status.Failure = &lmv1alpha1.MigrationFailure{Phase: lmv1alpha1.PhasePreCopy, Reason: "BudgetExceeded", Message: "too slow"}
	p.Finish(failed)
	if !strings.HasSuffix(out.String(), "\nlivemigration mig failed in PreCopy (BudgetExceeded): too slow; the workload still runs on a\n") {
		t.Errorf("finish = %q", out.String())
	}
}

func newTestOptions(c client.Client, out *bytes.Buffer) *Options {
	return &Options{IOStreams: genericiooptions.IOStreams{Out: out, ErrOut: out}, Client: c, Terminal: ptr.To(false),
		Clock: clock.RealClock{}, PollInterval: time.Millisecond}
}

func run(t *testing.T, o *Options, args ...string) error {
	t.Helper()
	cmd := newCommand(o)
	cmd.SetArgs(args)
	cmd.SetOut(o.Out)
	cmd.SetErr(o.ErrOut)
	return cmd.ExecuteContext(context.Background())
}

func TestMoveWaitFollowsToSuccess(t *testing.T) {
	phases := []lmv1alpha1.LiveMigrationPhase{lmv1alpha1.PhasePlanning, lmv1alpha1.PhaseCheckpointing, lmv1alpha1.PhaseSucceeded}
	gets := 0
	base := fake.NewClientBuilder().WithScheme(Scheme()).WithStatusSubresource(&lmv1alpha1.LiveMigration{}).Build()
	c := interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := cl.Get(ctx, key, obj, opts...); err != nil {
				return err
			}
			if lm, ok := obj.(*lmv1alpha1.LiveMigration); ok {
				lm.Status.Phase = phases[min(gets, len(phases)-1)]
				lm.Status.SourceCluster, lm.Status.TargetCluster = "a", "b"
				gets++
			}
			return nil
		},
	})
	var out bytes.Buffer
	o := newTestOptions(c, &out)
	if err := run(t, o, "move", "sts/db", "--to", "b", "--name", "m1", "--wait"); err != nil {
		t.Fatalf("move: %v\n%s", err, out.String())
	}
	created := &lmv1alpha1.LiveMigration{}
	if err := base.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "m1"}, created); err != nil {
		t.Fatalf("LiveMigration not created: %v", err)
	}
	if created.Spec.TargetCluster != "b" || created.Spec.WorkloadRef.Kind != "StatefulSet" {
		t.Errorf("created spec = %+v", created.Spec)
	}
	want := `livemigration.livemigrate.io/m1 created
Planning      a→b  0B
Checkpointing a→b  0B
Succeeded     a→b  0B
livemigration m1 succeeded: StatefulSet db moved a → b, 0B moved (memory 0B, volumes 0B + final delta 0B)
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestMoveWaitReportsFailure(t *testing.T) {
	lm := status(lmv1alpha1.PhaseFailed, 0, 0, 0)
	lm.Namespace, lm.Name = "default", "m1"
	lm.Status.Failure = &lmv1alpha1.MigrationFailure{Phase: lmv1alpha1.PhasePlanning, Reason: "TargetNotReady", Message: "target cluster \"b\" is not Ready"}
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(lm).WithStatusSubresource(lm).Build()
	var out bytes.Buffer
	err := run(t, newTestOptions(c, &out), "status", "m1", "--wait")
	if err == nil || !strings.Contains(err.Error(), "failed in Planning (TargetNotReady)") {
		t.Fatalf("err = %v, want the failure", err)
	}
}

func TestStatusAndAbort(t *testing.T) {
	now := time.Now()
	running := status(lmv1alpha1.PhasePreCopy, 0, 0, 0)
	running.Namespace, running.Name, running.CreationTimestamp = "default", "m1", metav1.NewTime(now.Add(-90*time.Second))
	cleanup := status(lmv1alpha1.PhaseCleanup, 0, 0, 0)
	cleanup.Namespace, cleanup.Name, cleanup.CreationTimestamp = "default", "m2", metav1.NewTime(now.Add(-3*time.Hour))
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(running, cleanup).WithStatusSubresource(running).Build()
	var out bytes.Buffer
	o := newTestOptions(c, &out)
	o.Clock = clocktesting.NewFakeClock(now)

	if err := run(t, o, "status"); err != nil {
		t.Fatal(err)
	}
	want := `NAME                     WORKLOAD                   PHASE         SOURCE     TARGET     DOWNTIME   AGE
m1                       statefulset/db             PreCopy       a          b          -          1m
m2                       statefulset/db             Cleanup       a          b          -          3h
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	out.Reset()
	if err := run(t, o, "abort", "m1"); err != nil {
		t.Fatal(err)
	}
	got := &lmv1alpha1.LiveMigration{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "m1"}, got); err != nil || !got.Spec.Abort {
		t.Fatalf("abort not set: %v %+v", err, got.Spec)
	}
	err := run(t, o, "abort", "m2")
	if err == nil || !strings.Contains(err.Error(), "cannot be rolled back; migrate it back instead") {
		t.Errorf("abort in Cleanup: err = %v", err)
	}
	err = run(t, o, "abort", "nope")
	if err == nil || !strings.Contains(err.Error(), "list them with: kubectl livemigrate status") {
		t.Errorf("abort of a missing one: err = %v", err)
	}

	out.Reset()
	if err := run(t, o, "status", "m1"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Phase:      PreCopy") || !strings.Contains(out.String(), "Workload:   StatefulSet db") {
		t.Errorf("describe = %s", out.String())
	}
}

func TestPlanOutput(t *testing.T) {
	objs := []client.Object{
		builder.Ready(builder.MakeCluster("a").Allocatable("cpu", "8", "memory", "16Gi", "pods", "100").Obj(), true),
		builder.Ready(builder.MakeCluster("b").Allocatable("cpu", "64", "memory", "256Gi", "pods", "100").Obj(), true),
		builder.Ready(builder.MakeCluster("c").Allocatable("cpu", "16", "memory", "32Gi", "pods", "100").Allocated("cpu", "8", "memory", "16Gi").Obj(), true),
		builder.Ready(builder.MakeCluster("full").Allocatable("cpu", "1", "memory", "1Gi", "pods", "100").Allocated("cpu", "1", "memory", "1Gi").Obj(), true),
		builder.Ready(builder.MakeCluster("down").Obj(), false),
		builder.MakeBinding("default", "web").SingleCluster().Request("cpu", "1", "memory", "512Mi").Replicas(2).ScheduledOn(2, "a").Obj(),
	}
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(objs...).Build()
	var out bytes.Buffer
	if err := run(t, newTestOptions(c, &out), "plan", "deployment/web"); err != nil {
		t.Fatalf("plan: %v", err)
	}
	got := out.String()
	for _, want := range []string{
		"Workload:  Deployment web on a\n",
		"Target:    b\n",
		"Downtime:  ~10.24s expected (checkpoint ~1.0GiB at 100.0MiB/s",
		"CLUSTER          FEASIBLE   SCORE  CAPACITY   LATENCY  WHY NOT",
		"b                yes          100       100         0  (chosen)",
		"c                yes           42        42         0  scored 42, below b's 100",
		"is the source cluster",
		"is not Ready",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("plan output lacks %q:\n%s", want, got)
		}
	}
	lines := strings.Split(got, "\n")
	var bLine, fullLine string
	for _, l := range lines {
		if strings.HasPrefix(l, "b ") {
			bLine = l
		}
		if strings.HasPrefix(l, "full ") {
			fullLine = l
		}
	}
	if !strings.Contains(bLine, "yes") || !strings.Contains(fullLine, "no") || !strings.Contains(fullLine, "Capacity:") {
		t.Errorf("rows: b=%q full=%q", bLine, fullLine)
	}

	if err := run(t, newTestOptions(c, &out), "plan", "deployment/web", "--to", "full"); err == nil || !strings.Contains(err.Error(), "cannot move to full: Capacity:") {
		t.Errorf("plan --to full: err = %v", err)
	}
	if err := run(t, newTestOptions(c, &out), "plan", "deployment/ghost"); err == nil || !strings.Contains(err.Error(), "create a PropagationPolicy") {
		t.Errorf("plan of an unpropagated workload: err = %v", err)
	}
}

// TestPlanLearnsRestoreTime: an earlier migration into the chosen target
// adds its dump, pull and restore time to the expected downtime.
func TestPlanLearnsRestoreTime(t *testing.T) {
	past := builder.MakeLiveMigration("default", "before", "other").Target("b").Obj()
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for _, s := range []struct {
		p lmv1alpha1.LiveMigrationPhase
		d time.Duration
	}{
		{lmv1alpha1.PhaseCheckpointing, time.Second}, {lmv1alpha1.PhaseRebinding, time.Second}, {lmv1alpha1.PhaseTransfer, 9 * time.Second},
		{lmv1alpha1.PhaseRestoring, 2 * time.Second}, {lmv1alpha1.PhaseVerifying, 0}, {lmv1alpha1.PhaseCleanup, time.Second}, {lmv1alpha1.PhaseSucceeded, 0},
	} {
		past.Status.PhaseTransitions = append(past.Status.PhaseTransitions, lmv1alpha1.PhaseTransition{Phase: s.p, EnteredAt: metav1.NewMicroTime(at)})
		at = at.Add(s.d)
	}
	past.Status.Phase, past.Status.TargetCluster, past.Status.CompletionTime = lmv1alpha1.PhaseSucceeded, "b", &metav1.Time{Time: at}
	past.Status.Bytes.Memory = 1 << 30
	objs := []client.Object{
		builder.Ready(builder.MakeCluster("a").Allocatable("cpu", "8", "memory", "16Gi", "pods", "100").Obj(), true),
		builder.Ready(builder.MakeCluster("b").Allocatable("cpu", "64", "memory", "256Gi", "pods", "100").Obj(), true),
		builder.MakeBinding("default", "web").SingleCluster().Request("cpu", "1", "memory", "512Mi").Replicas(2).ScheduledOn(2, "a").Obj(),
		past,
	}
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(objs...).Build()
	var out bytes.Buffer
	if err := run(t, newTestOptions(c, &out), "plan", "deployment/web"); err != nil {
		t.Fatalf("plan: %v", err)
	}
	// 1 GiB at 100 MiB/s = 10.24 s, plus the 3 s of dump and restore seen.
	want := "Downtime:  ~13.24s expected (checkpoint ~1.0GiB at 100.0MiB/s + 3s dump, pull and restore, learned from 1 earlier migrations into b"
	if !strings.Contains(out.String(), want) {
		t.Errorf("plan output lacks %q:\n%s", want, out.String())
	}
}

// TestDescribeShowsVolumesDuringPass: a volume whose first pass is still
// running (0 rounds) shows the bytes it has sent so far.
func TestDescribeShowsVolumesDuringPass(t *testing.T) {
	lm := status(lmv1alpha1.PhasePreCopy, 0, 100<<20, 0)
	lm.Status.Volumes = []lmv1alpha1.VolumeMigrationStatus{
		{ClaimName: "data-db-0", PodName: "db-0", PreCopyBytes: 100 << 20},
		{ClaimName: "wal-db-0", PodName: "db-0", Rounds: 2, PreCopyBytes: 3 << 20, LastDeltaBytes: 4 << 10},
	}
	var out bytes.Buffer
	Describe(&out, lm)
	for _, want := range []string{
		"Volumes:\n",
		"  data-db-0                pod=db-0 rounds=0 sent=100.0MiB last-delta=0B final-delta=0B synced=false\n",
		"  wal-db-0                 pod=db-0 rounds=2 sent=3.0MiB last-delta=4.0KiB final-delta=0B synced=false\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("describe output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDescribeShowsTriggerAndReason: the detail names the trigger that
// created the migration and why.
func TestDescribeShowsTriggerAndReason(t *testing.T) {
	lm := status(lmv1alpha1.PhasePreCopy, 0, 0, 0)
	lm.Labels = map[string]string{policy.LabelTrigger: string(policy.TriggerPlacement)}
	lm.Annotations = map[string]string{policy.AnnotationReason: "the placement changed (PropagationPolicy shop/db): karmada-scheduler placed the workload on member2 instead of member1; eviction strategy LiveMigrate"}
	var out bytes.Buffer
	Describe(&out, lm)
	for _, want := range []string{
		"Trigger:    placement\n",
		"Reason:     the placement changed (PropagationPolicy shop/db): karmada-scheduler placed the workload on member2 instead of member1; eviction strategy LiveMigrate\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("describe output lacks %q:\n%s", want, out.String())
		}
	}
	lm.Labels, lm.Annotations = nil, nil
	out.Reset()
	Describe(&out, lm)
	if !strings.Contains(out.String(), "Trigger:    manual\n") || strings.Contains(out.String(), "Reason:") {
		t.Errorf("a migration without labels: %s", out.String())
	}
}

// TestWaitRidesOutAnAPIServerRestart: --wait goes on following the
// migration while the API server does not answer for a moment (connection
// refused, then unavailable), saying so, and still fails at once on an
// answer about the migration (not found).
func TestWaitRidesOutAnAPIServerRestart(t *testing.T) {
	lm := status(lmv1alpha1.PhaseSucceeded, 0, 0, 0)
	lm.Namespace, lm.Name = "default", "m1"
	lm.Status.SourceCluster, lm.Status.TargetCluster = "a", "b"
	base := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(lm).WithStatusSubresource(lm).Build()
	fails := []error{
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
		apierrors.NewServiceUnavailable("the server is currently unable to handle the request"),
	}
	gets := 0
	c := interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			gets++
			if gets <= len(fails) {
				return fails[gets-1]
			}
			return cl.Get(ctx, key, obj, opts...)
		},
	})
	var out bytes.Buffer
	if err := run(t, newTestOptions(c, &out), "status", "m1", "--wait"); err != nil {
		t.Fatalf("status --wait: %v\n%s", err, out.String())
	}
	for _, want := range []string{"cannot read LiveMigration m1", "connection refused", "retrying", "reading LiveMigration m1 again", "livemigration m1 succeeded"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	err := run(t, newTestOptions(base, &out), "status", "gone", "--wait")
	if err == nil || !apierrors.IsNotFound(err) {
		t.Errorf("status --wait of a missing migration = %v, want NotFound at once", err)
	}
}
