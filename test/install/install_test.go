package install

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/livemigrate/livemigrate/test/chart"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/lab"
)

// applyWebhookRegistration server-side applies a rendered webhook
// registration with the client configuration the lab registered (a URL and
// the lab's CA instead of the Service the lab has no network for): the
// rules, selectors and policies are the chart's.
func applyWebhookRegistration(ctx context.Context, t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, rendered *unstructured.Unstructured) {
	t.Helper()
	if rendered == nil {
		t.Fatalf("the chart renders no %s", gvr.Resource)
	}
	live, err := dyn.Resource(gvr).Get(ctx, rendered.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	liveHooks, _, _ := unstructured.NestedSlice(live.Object, "webhooks")
	hooks, _, _ := unstructured.NestedSlice(rendered.Object, "webhooks")
	if len(liveHooks) != len(hooks) {
		t.Fatalf("%s: the lab registered %d webhooks, the chart renders %d", rendered.GetName(), len(liveHooks), len(hooks))
	}
	obj := rendered.DeepCopy()
	for i := range hooks {
		hooks[i].(map[string]any)["clientConfig"] = liveHooks[i].(map[string]any)["clientConfig"]
	}
	if err := unstructured.SetNestedSlice(obj.Object, hooks, "webhooks"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(gvr).Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		t.Fatalf("server-side apply of %s: %v", obj.GetName(), err)
	}
}

// TestChartInstallationMigrates: with every component started as the
// chart renders it (TestMain), a StatefulSet with a local volume
// live-migrates from member1 to member2 while it writes, and every
// invariant of the end-to-end test holds.
func TestChartInstallationMigrates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	// Every component runs the rendered command line: a flag only the
	// chart gives is on each one's command line in its log.
	for component, flag := range map[string]string{
		"livemigrate-agent":       "--replication-enabled=true",
		"livemigrate-restore":     "--leader-elect",
		"livemigrate-descheduler": "--leader-election-namespace=karmada-system",
		"livemigrate-scheduler":   "--plugins=*",
		"livemigrate-prober":      "--create-if-missing",
	} {
		ins := testLab.Instances(component)
		if len(ins) == 0 {
			t.Fatalf("no instance of %s", component)
		}
		for _, in := range ins {
			line := firstLogLine(t, in)
			if !strings.Contains(line, " "+flag) {
				t.Errorf("%s does not run the rendered command line (no %s): %s", in.Name, flag, line)
			}
		}
	}

	admission := func(r string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: r}
	}
	for _, m := range testLab.Members {
		applyWebhookRegistration(ctx, t, m.Dynamic, admission("mutatingwebhookconfigurations"), chart.Find(rendered.member, "MutatingWebhookConfiguration", "livemigrate-restore"))
	}
	applyWebhookRegistration(ctx, t, testLab.Karmada.Dynamic, admission("validatingwebhookconfigurations"), chart.Find(rendered.karmada, "ValidatingWebhookConfiguration", "livemigrate-descheduler"))

	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env, err := scenario.FromLab(testLab, filepath.Join(root, "bin"), &scenario.LogWriter{Log: t.Log}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	app, err := env.Deploy(ctx, "install-sts", "db", scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	if app.Source != "member1" {
		t.Fatalf("placed in %s, want member1", app.Source)
	}
	if _, err := app.WaitRunning(ctx, "member1", 500); err != nil {
		t.Fatal(err)
	}
	obs, err := app.Move(ctx, scenario.MoveOptions{To: "member2", Name: "db-to-member2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl livemigrate move --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
	res, errs := env.CheckSucceeded(ctx, app, obs)
	if len(errs) > 0 {
		t.Fatalf("%d invariant violations:\n%v", len(errs), errors.Join(errs...))
	}
	t.Logf("restored from counter %d (the source's last log line: %d); %s", res.RestoredFrom, res.SourceLast, res.Verified)
}

func firstLogLine(t *testing.T, in *lab.Instance) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(in.Lab.Dir, "logs", in.Name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	return line
}
