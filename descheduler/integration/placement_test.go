package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/descheduler/placementtrigger"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/descheduler/webhook"
)

// placementWebhook returns the placement webhook exactly as the chart
// declares it (manifests/install/karmada.yaml: rules, matchConditions,
// failure policy), pointed at base.
func placementWebhook(t *testing.T, base string) admissionregistrationv1.MutatingWebhook {
	t.Helper()
	const manifest = "manifests/install/karmada.yaml"
	data, err := os.ReadFile("../../" + manifest)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("CA_BUNDLE"), []byte(`""`))
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		if doc["kind"] != "MutatingWebhookConfiguration" {
			continue
		}
		raw, _ := json.Marshal(doc)
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := json.Unmarshal(raw, mwc); err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		for _, h := range mwc.Webhooks {
			if u := h.ClientConfig.URL; u != nil && strings.HasSuffix(*u, webhook.PlacementPath) {
				p, err := url.Parse(*u)
				if err != nil {
					t.Fatal(err)
				}
				if len(h.MatchConditions) == 0 {
					t.Fatal("the placement webhook has no matchConditions: every ResourceBinding update would be sent to it")
				}
				h.ClientConfig.URL = ptr.To(base + p.Path)
				h.ClientConfig.CABundle = webhookCA
				return h
			}
		}
	}
	t.Fatalf("%s has no webhook for %s", manifest, webhook.PlacementPath)
	return admissionregistrationv1.MutatingWebhook{}
}

func placementRequests(t *testing.T) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 8)
	go func() { metrics.PlacementAdmissionRequests.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		d := &dto.Metric{}
		if err := m.Write(d); err != nil {
			t.Fatal(err)
		}
		sum += d.GetCounter().GetValue()
	}
	return sum
}

// schedule writes a scheduling result as karmada-scheduler does: one merge
// patch of spec.clusters and its applied-placement annotation. It returns
// the binding the API server stored.
func schedule(ctx context.Context, ns string, clusters ...string) (*workv1alpha2.ResourceBinding, error) {
	var tc []map[string]any
	for _, c := range clusters {
		tc = append(tc, map[string]any{"name": c, "replicas": 1})
	}
	patch, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{"policy.karmada.io/applied-placement": fmt.Sprintf(`{"clusterAffinity":{"clusterNames":%q}}`, clusters)}},
		"spec":     map[string]any{"clusters": tc},
	})
	rb := &workv1alpha2.ResourceBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-deployment"}}
	err := k.Patch(ctx, rb, client.RawPatch(types.MergePatchType, patch))
	return rb, err
}

func optInTemplate(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, d); err != nil {
		t.Fatal(err)
	}
	// A merge patch: the Deployment controller may update the object
	// meanwhile.
	patch := client.MergeFrom(d.DeepCopy())
	d.Annotations = map[string]string{policy.AnnotationEvictionStrategy: "LiveMigrate"}
	if err := k.Patch(ctx, d, patch); err != nil {
		t.Fatal(err)
	}
}

// waitLabelled waits until the descheduler labelled the workload's binding
// as opted in.
func waitLabelled(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rb := &workv1alpha2.ResourceBinding{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-deployment"}, rb); err != nil {
			t.Fatal(err)
		}
		if rb.Labels[policy.LabelOptedIn] == "true" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("binding %s/app-deployment never labelled %s: labels %v", ns, policy.LabelOptedIn, rb.Labels)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPlacementChange runs the placement webhook, registered as the chart
// declares it, behind a real kube-apiserver, and the placement trigger as
// the descheduler's binary runs it: karmada-scheduler's result that would
// move an opted-in workload is held (spec.clusters kept, the result
// recorded) and the workload moves there by a LiveMigration labelled
// trigger=placement; the same result on a workload that is not opted in
// is stored as written and never reaches the webhook; with the webhook
// unreachable the result is refused, so nothing moves.
func TestPlacementChange(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hook := placementWebhook(t, webhookBase)
	// The last subtest has its own, unreachable, copy of the webhook.
	hook.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"placement-down"}}}}
	if err := k.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-descheduler-placement"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{hook}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	t.Run("an opted-in workload is held and moves live", func(t *testing.T) {
		ns := "placement-held"
		workload(t, ctx, ns)
		optInTemplate(t, ctx, ns)
		waitLabelled(t, ctx, ns)
		// The API server picks the configuration up asynchronously.
		var rb *workv1alpha2.ResourceBinding
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			if rb, err = schedule(ctx, ns, "b"); err != nil {
				t.Fatalf("writing the scheduling result: %v", err)
			}
			if _, held := rb.Annotations[policy.AnnotationScheduledClusters]; held || time.Now().After(deadline) {
				break
			}
			// Not held yet: put it back and try again.
			if _, err := schedule(ctx, ns, "a"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
		}
		if got := placementtrigger.Names(rb.Spec.Clusters); got != "a" {
			t.Fatalf("stored spec.clusters = %s, want a (held)", got)
		}
		if got := rb.Annotations[policy.AnnotationScheduledClusters]; got != `[{"name":"b","replicas":1}]` {
			t.Errorf("%s = %q, want the scheduling result", policy.AnnotationScheduledClusters, got)
		}

		var lm *lmv1alpha1.LiveMigration
		deadline = time.Now().Add(60 * time.Second)
		for lm == nil && time.Now().Before(deadline) {
			var list lmv1alpha1.LiveMigrationList
			if err := k.List(ctx, &list, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			if len(list.Items) > 1 {
				t.Fatalf("%d migrations of one workload", len(list.Items))
			}
			if len(list.Items) == 1 {
				lm = &list.Items[0]
			}
			time.Sleep(200 * time.Millisecond)
		}
		if lm == nil {
			t.Fatal("the held placement change created no LiveMigration")
		}
		if lm.Labels[policy.LabelTrigger] != string(policy.TriggerPlacement) || lm.Spec.TargetCluster != "b" ||
			!strings.Contains(lm.Annotations[policy.AnnotationReason], "placed the workload on b instead of a") {
			t.Errorf("LiveMigration %s: labels %v, target %q, reason %q; want trigger=placement to b", lm.Name, lm.Labels, lm.Spec.TargetCluster, lm.Annotations[policy.AnnotationReason])
		}
		waitPhase(t, ctx, ns, lm.Name, lmv1alpha1.PhaseSucceeded)
		deadline = time.Now().Add(30 * time.Second)
		for {
			got := &workv1alpha2.ResourceBinding{}
			if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-deployment"}, got); err != nil {
				t.Fatal(err)
			}
			_, held := got.Annotations[policy.AnnotationScheduledClusters]
			if placementtrigger.Names(got.Spec.Clusters) == "b" && !held {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the migration: clusters %s, held result present %v; want b and none", placementtrigger.Names(got.Spec.Clusters), held)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("a workload that is not opted in is moved as written, without a call", func(t *testing.T) {
		ns := "placement-plain"
		workload(t, ctx, ns)
		before := placementRequests(t)
		rb, err := schedule(ctx, ns, "b")
		if err != nil {
			t.Fatal(err)
		}
		if got := placementtrigger.Names(rb.Spec.Clusters); got != "b" {
			t.Errorf("stored spec.clusters = %s, want b", got)
		}
		if _, held := rb.Annotations[policy.AnnotationScheduledClusters]; held {
			t.Error("a result of a workload that is not opted in was held")
		}
		if got := placementRequests(t); got != before {
			t.Errorf("the webhook answered %v requests for a binding that is not opted in, want 0", got-before)
		}
	})

	t.Run("with the webhook unreachable nothing moves", func(t *testing.T) {
		ns := "placement-down"
		workload(t, ctx, ns)
		optInTemplate(t, ctx, ns)
		waitLabelled(t, ctx, ns)
		// The chart's webhook, pointed at a port nothing listens on, for
		// this namespace only.
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		down := placementWebhook(t, fmt.Sprintf("https://127.0.0.1:%d", port))
		down.Name = "placement-down.livemigrate.io"
		down.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
		if err := k.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-placement-down"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{down}}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = k.Delete(context.Background(), &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-placement-down"}})
		}()
		deadline := time.Now().Add(30 * time.Second)
		for {
			rb, err := schedule(ctx, ns, "b")
			if err != nil {
				if !strings.Contains(err.Error(), "placement-down.livemigrate.io") {
					t.Errorf("error %v does not name the webhook", err)
				}
				break
			}
			// The configuration is not in effect yet: put the binding back.
			if _, err := schedule(ctx, ns, "a"); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the unreachable webhook never refused the update (stored %s)", placementtrigger.Names(rb.Spec.Clusters))
			}
			time.Sleep(300 * time.Millisecond)
		}
		got := &workv1alpha2.ResourceBinding{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-deployment"}, got); err != nil {
			t.Fatal(err)
		}
		if names := placementtrigger.Names(got.Spec.Clusters); names != "a" {
			t.Errorf("spec.clusters = %s after a refused update, want a", names)
		}
	})
}
