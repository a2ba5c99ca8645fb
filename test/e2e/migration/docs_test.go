package migration

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// notAPIObjects are the API groups of examples that are files of a tool,
// not objects of a cluster: they are not applied.
var notAPIObjects = map[string]string{
	"kustomize.config.k8s.io": "a kustomization.yaml, read by kustomize",
}

// TestDocsExamples applies every example object of docs/*.md and README.md
// to the lab, verbatim, with kubectl apply, as a reader would.
//
// A LiveMigration example is applied as it is written: its namespace, its
// name, its workload and its target are the example's. The test only
// creates what the example assumes exists: the workload it names, as the
// lab app (a StatefulSet or a Deployment with a local volume, written to
// continuously) in that namespace, placed by Karmada on a member that is
// not the example's target (the lab's members are member1 and member2,
// the names the docs use). The migration must succeed with every
// invariant the other scenarios check, and the spec stored must be the
// example's, in its spelling (nothing wrote it back). Any other example
// object is applied and must be created.
func TestDocsExamples(t *testing.T) {
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	rel := []string{"README.md"}
	for _, f := range files {
		r, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		rel = append(rel, r)
	}
	examples, err := scenario.DocExamples(root, rel...)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := newEnv(t)
	migrations := 0
	for _, ex := range examples {
		gvk := ex.Object.GroupVersionKind()
		if why, ok := notAPIObjects[gvk.Group]; ok {
			t.Logf("%s: %s, not an object of a cluster: not applied", ex, why)
			continue
		}
		if gvk.Group == lmv1alpha1.GroupVersion.Group && gvk.Kind == "LiveMigration" {
			migrations++
			t.Run(ex.String(), func(t *testing.T) { docsMigration(t, env, ex) })
			continue
		}
		t.Run(ex.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := env.Kubectl(ctx, ex.YAML, "apply", "-f", "-"); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Kubectl(ctx, ex.YAML, "get", "-f", "-"); err != nil {
				t.Fatal(err)
			}
		})
	}
	if migrations == 0 {
		t.Fatalf("no LiveMigration example in %v: docs/livemigration.md shows one", rel)
	}
	for _, ex := range examples {
		if gvk := ex.Object.GroupVersionKind(); gvk.Group == lmv1alpha1.GroupVersion.Group && gvk.Kind == "LiveMigration" {
			t.Run("refusals of "+ex.String(), func(t *testing.T) { docsRefusals(t, env, ex) })
		}
	}
}

// docsRefusals applies the example with one value made wrong, as a reader
// might write it: the lab's kube-apiserver must refuse it naming the field
// and what to write, without the error that names no field.
func docsRefusals(t *testing.T, env *scenario.Env, ex scenario.DocExample) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := ex.Object.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	if _, err := env.Kubectl(ctx, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: "+ns+"}\n"), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	text := string(ex.YAML)
	cases := []struct {
		old, new, want string
	}{
		{"preCopy: 30m", "preCopy: banana", `spec.timeouts.preCopy: Invalid value: "banana": ` + lmv1alpha1.MsgTimeout},
		{"checkpointing: 5m", "checkpointing: 0s", `spec.timeouts.checkpointing: Invalid value: "0s": ` + lmv1alpha1.MsgTimeout},
		{"downtimeBudget: 2s", "downtimeBudget: -2s", `spec.downtimeBudget: Invalid value: "-2s": ` + lmv1alpha1.MsgDowntimeBudget},
		{"bandwidthLimit: 200Mi", "bandwidthLimit: 0", `spec.bandwidthLimit: Invalid value: 0: ` + lmv1alpha1.MsgBandwidthLimit},
		{"convergenceThreshold: 64Mi", "convergenceThreshold: -1", `spec.preCopy.convergenceThreshold: Invalid value: -1: ` + lmv1alpha1.MsgConvergenceThreshold},
		{"kind: StatefulSet", "kind: DaemonSet", `spec.workloadRef.kind: Invalid value: "DaemonSet": ` + lmv1alpha1.MsgWorkloadKind},
	}
	for _, tc := range cases {
		if !strings.Contains(text, tc.old) {
			t.Errorf("the example has no %q any more: update this test", tc.old)
			continue
		}
		wrong := strings.Replace(text, tc.old, tc.new, 1)
		wrong = strings.Replace(wrong, "name: "+ex.Object.GetName(), "name: "+ex.Object.GetName()+"-refused", 1)
		out, err := env.Kubectl(ctx, []byte(wrong), "apply", "-f", "-")
		switch {
		case err == nil:
			t.Errorf("%s: admitted: %s", tc.new, out)
		case !strings.Contains(string(out), tc.want):
			t.Errorf("%s: kubectl says %s\nwant %q", tc.new, out, tc.want)
		case strings.Contains(string(out), "some validation rules were not checked"):
			t.Errorf("%s: kubectl says %s\nwith an error that names no field", tc.new, out)
		}
	}
}

// docsMigration runs one LiveMigration example: the workload it names is
// created, the example applied and followed to its end.
func docsMigration(t *testing.T, env *scenario.Env, ex scenario.DocExample) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	u := ex.Object
	ns := u.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "workloadRef", "kind")
	name, _, _ := unstructured.NestedString(u.Object, "spec", "workloadRef", "name")
	target, _, _ := unstructured.NestedString(u.Object, "spec", "targetCluster")
	source := ""
	for _, m := range env.MemberNames() {
		if m != target {
			source = m
			break
		}
	}
	var app *scenario.App
	var err error
	switch kind {
	case "StatefulSet":
		app, err = env.Deploy(ctx, ns, name, scenario.AppOptions{Cluster: source})
	case "Deployment":
		app, err = env.DeployDeployment(ctx, ns, name, 1, scenario.AppOptions{Cluster: source})
	default:
		t.Fatalf("the example migrates a %q: the lab app runs as a StatefulSet or a Deployment", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	if app.Source != source {
		t.Fatalf("placed in %s, want %s", app.Source, source)
	}
	if _, err := app.WaitRunning(ctx, source, 500); err != nil {
		t.Fatal(err)
	}
	obs, err := app.ApplyMigration(ctx, ex.YAML, u.GetName(), target)
	if err != nil {
		t.Fatal(err)
	}
	if st := obs.Migration.Status; !st.Phase.IsTerminal() {
		t.Fatalf("the example did not reach a terminal phase: phase %q, conditions %+v (kubectl: %v)", st.Phase, st.Conditions, obs.Err)
	}
	t.Logf("applied and followed in %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))

	stored, err := env.StoredSpec(ctx, "livemigrations.livemigrate.io", ns, u.GetName())
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := unstructured.NestedMap(u.Object, "spec")
	if d := cmp.Diff(want, stored); d != "" {
		t.Errorf("stored spec differs from the example's (-example +stored):\n%s", d)
	}
	res, errs := env.CheckSucceeded(ctx, app, obs)
	report(t, errs)
	t.Logf("restored from counter %d (the source's last log line: %d); %s", res.RestoredFrom, res.SourceLast, res.Verified)
}
