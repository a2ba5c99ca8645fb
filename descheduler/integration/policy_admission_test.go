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

	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/descheduler/metrics"
	"github.com/livemigrate/livemigrate/descheduler/webhook"
)

// registerPolicyWebhook registers the policy annotation webhook exactly as
// the chart declares it (manifests/install/karmada.yaml, rendered by make
// manifests: rules, matchConditions, failure policy), pointed at the test's
// descheduler.
func registerPolicyWebhook(t *testing.T, ctx context.Context) {
	t.Helper()
	const manifest = "manifests/install/karmada.yaml"
	data, err := os.ReadFile("../../" + manifest)
	if err != nil {
		t.Fatal(err)
	}
	// The manifest's CA_BUNDLE placeholder is not base64.
	data = bytes.ReplaceAll(data, []byte("CA_BUNDLE"), []byte(`""`))
	var hook *admissionregistrationv1.ValidatingWebhook
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		if doc["kind"] != "ValidatingWebhookConfiguration" {
			continue
		}
		raw, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := json.Unmarshal(raw, vwc); err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		for i := range vwc.Webhooks {
			if u := vwc.Webhooks[i].ClientConfig.URL; u != nil && strings.HasSuffix(*u, webhook.PolicyPath) {
				hook = &vwc.Webhooks[i]
			}
		}
	}
	if hook == nil {
		t.Fatalf("%s has no webhook for %s", manifest, webhook.PolicyPath)
	}
	if len(hook.MatchConditions) == 0 {
		t.Fatal("the policy webhook has no matchConditions: every Deployment and policy would be sent to it")
	}
	u, err := url.Parse(*hook.ClientConfig.URL)
	if err != nil {
		t.Fatal(err)
	}
	hook.ClientConfig.URL = ptr.To(webhookBase + u.Path)
	hook.ClientConfig.CABundle = webhookCA
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-descheduler-policy"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{*hook}}
	if err := k.Create(ctx, cfg); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// policyRequests sums the policy webhook's requests over kinds and results.
func policyRequests(t *testing.T) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { metrics.PolicyAdmissionRequests.Collect(ch); close(ch) }()
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

func deploymentWith(ns, name string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
}

func statefulSetWith(ns, name string, annotations map[string]string) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
}

func propagationSpec() policyv1alpha1.PropagationSpec {
	return policyv1alpha1.PropagationSpec{ResourceSelectors: []policyv1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment", Name: "x"}}}
}

func policyWith(ns, name string, annotations map[string]string) *policyv1alpha1.PropagationPolicy {
	return &policyv1alpha1.PropagationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}, Spec: propagationSpec()}
}

func clusterPolicyWith(name string, annotations map[string]string) *policyv1alpha1.ClusterPropagationPolicy {
	return &policyv1alpha1.ClusterPropagationPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}, Spec: propagationSpec()}
}

// TestPolicyAnnotationAdmission runs the policy annotation webhook behind a
// real kube-apiserver: malformed values on each of the four kinds are
// rejected with a message naming the annotation, the value and the allowed
// values, and objects without a livemigrate.io/ annotation never reach the
// webhook (the matchConditions filter them in the API server).
func TestPolicyAnnotationAdmission(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := "policy-admission"
	if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	registerPolicyWebhook(t, ctx)

	// The API server picks the configuration up asynchronously: wait until a
	// malformed value is refused.
	bad := map[string]string{"livemigrate.io/eviction-strategy": "Always"}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		err := k.Create(ctx, deploymentWith(ns, fmt.Sprintf("probe-%d", i), bad))
		if err != nil && strings.Contains(err.Error(), "livemigrate.io/eviction-strategy") {
			break
		}
		if err != nil {
			t.Fatalf("creating the probe Deployment: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the policy webhook never refused a malformed eviction strategy")
		}
		time.Sleep(200 * time.Millisecond)
	}

	t.Run("malformed values are rejected on each kind", func(t *testing.T) {
		cases := map[string]struct {
			obj  client.Object
			want []string
		}{
			"Deployment": {obj: deploymentWith(ns, "bad-strategy", map[string]string{"livemigrate.io/eviction-strategy": "Live"}),
				want: []string{"livemigrate.io/eviction-strategy", `"Live"`, `"LiveMigrate", "LiveMigrateIfPossible", "None"`}},
			"StatefulSet": {obj: statefulSetWith(ns, "bad-budget", map[string]string{"livemigrate.io/downtime-budget": "fast"}),
				want: []string{"livemigrate.io/downtime-budget", `"fast"`, "must be a positive duration, e.g. 2s or 500ms"}},
			"PropagationPolicy": {obj: policyWith(ns, "bad-rebalance", map[string]string{"livemigrate.io/rebalance": "maybe"}),
				want: []string{"livemigrate.io/rebalance", `"maybe"`, `"true", "false"`}},
			"ClusterPropagationPolicy": {obj: clusterPolicyWith("bad-priority", map[string]string{"livemigrate.io/drain-priority": "urgent"}),
				want: []string{"livemigrate.io/drain-priority", `"urgent"`, "must be an integer"}},
		}
		for kind, tc := range cases {
			t.Run(kind, func(t *testing.T) {
				err := k.Create(ctx, tc.obj)
				if err == nil {
					t.Fatalf("%s with a malformed annotation was admitted", kind)
				}
				if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
					t.Errorf("error %v is not an admission denial", err)
				}
				for _, w := range append(tc.want, kind) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err.Error(), w)
					}
				}
			})
		}
	})

	t.Run("objects without livemigrate.io/ annotations never reach the webhook", func(t *testing.T) {
		before := policyRequests(t)
		for _, o := range []client.Object{
			deploymentWith(ns, "plain", nil),
			statefulSetWith(ns, "other-annotations", map[string]string{"latency.livemigrate.io/near": "origin:eu", "livemigrate.io.example.com/x": "y"}),
			policyWith(ns, "plain", nil),
			clusterPolicyWith("plain", map[string]string{"team": "db"}),
		} {
			if err := k.Create(ctx, o); err != nil {
				t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
			}
		}
		if got := policyRequests(t); got != before {
			t.Errorf("the webhook answered %v requests for objects without livemigrate.io/ annotations, want 0", got-before)
		}
		// The control: one object that carries one is sent, and admitted.
		if err := k.Create(ctx, deploymentWith(ns, "opted-in", map[string]string{"livemigrate.io/eviction-strategy": "LiveMigrate"})); err != nil {
			t.Fatalf("a valid opt-in was refused: %v", err)
		}
		if got := policyRequests(t); got != before+1 {
			t.Errorf("the webhook answered %v requests for one annotated object, want 1", got-before)
		}
	})

	t.Run("an update with a malformed value is rejected, one removing it is not sent", func(t *testing.T) {
		// The simulated Deployment controller writes the status meanwhile:
		// each update retries on a resourceVersion conflict.
		update := func(change func(*appsv1.Deployment)) error {
			return retry.RetryOnConflict(retry.DefaultRetry, func() error {
				d := &appsv1.Deployment{}
				if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "opted-in"}, d); err != nil {
					return err
				}
				change(d)
				return k.Update(ctx, d)
			})
		}
		err := update(func(d *appsv1.Deployment) { d.Annotations["livemigrate.io/downtime-budget"] = "1 second" })
		if err == nil || !strings.Contains(err.Error(), `livemigrate.io/downtime-budget]: Invalid value: "1 second"`) {
			t.Fatalf("update with a malformed budget: err = %v, want the annotation named", err)
		}
		before := policyRequests(t)
		if err := update(func(d *appsv1.Deployment) { d.Annotations = nil }); err != nil {
			t.Fatalf("removing the annotations: %v", err)
		}
		if got := policyRequests(t); got != before {
			t.Errorf("removing every livemigrate.io/ annotation sent %v requests, want 0", got-before)
		}
	})
}
