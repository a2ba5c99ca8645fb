package restore

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

var now = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := agentv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// makePod starts a pod in namespace db with an app container and a
// sidecar.
func makePod(name string) *builder.PodWrapper {
	return builder.MakePod("db", name).Container("app", "livemigrate.io/labapp:latest").Container("sidecar", "busybox")
}

// makeRestore starts a PodRestore of migration mig-1 in namespace db.
func makeRestore(name, kind, workload string) *builder.PodRestoreWrapper {
	return builder.MakePodRestore("db", name, "mig-1", kind, workload).Created(now)
}

// pushedImage is the image of container app of the i-th checkpoint, name.
func pushedImage(name string, i int) string {
	return "reg.lab/lm/db-" + name + "-app@sha256:" + fmt.Sprintf("%064d", i)
}

func request(t *testing.T, pod *corev1.Pod, uid string) admission.Request {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: types.UID(uid), Operation: admissionv1.Create, Namespace: "db",
		Kind:   metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Object: runtime.RawExtension{Raw: raw},
	}}
}

// apply applies the response's patches to pod.
func apply(t *testing.T, pod *corev1.Pod, resp admission.Response) *corev1.Pod {
	t.Helper()
	if !resp.Allowed {
		t.Fatalf("pod denied: %+v", resp.Result)
	}
	raw, _ := json.Marshal(pod)
	if len(resp.Patches) == 0 {
		return pod
	}
	pb, _ := json.Marshal(resp.Patches)
	patch, err := jsonpatch.DecodePatch(pb)
	if err != nil {
		t.Fatal(err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	if err := json.Unmarshal(out, got); err != nil {
		t.Fatal(err)
	}
	return got
}

func newWebhook(t *testing.T, objs ...client.Object) (*Webhook, client.Client) {
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objs...).
		WithStatusSubresource(&agentv1alpha1.PodRestore{}).Build()
	return &Webhook{Client: c, Reader: c, Clock: clocktesting.NewFakePassiveClock(now)}, c
}

func images(p *corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.Containers {
		out = append(out, c.Image)
	}
	return out
}

func claims(t *testing.T, c client.Client, name string) []agentv1alpha1.RestoreClaim {
	t.Helper()
	pr := &agentv1alpha1.PodRestore{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "db", Name: name}, pr); err != nil {
		t.Fatal(err)
	}
	return pr.Status.Claims
}

func TestWebhook(t *testing.T) {
	cases := []struct {
		name       string
		restores   []client.Object
		pod        *corev1.Pod
		wantImages []string
		wantAnns   map[string]string
		wantClaims []agentv1alpha1.RestoreClaim
	}{
		{
			name:       "pod without a workload is untouched",
			restores:   []client.Object{makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).Obj()},
			pod:        makePod("lonely").Obj(),
			wantImages: []string{"livemigrate.io/labapp:latest", "busybox"},
		},
		{
			name:       "pod of another workload is untouched",
			restores:   []client.Object{makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).Obj()},
			pod:        makePod("other-0").ControlledBy("StatefulSet", "other").Obj(),
			wantImages: []string{"livemigrate.io/labapp:latest", "busybox"},
		},
		{
			name: "statefulset pod takes the checkpoint of its ordinal",
			restores: []client.Object{makeRestore("r", "StatefulSet", "web").
				Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).
				Checkpoint("web-1", ptr.To[int32](1), "app", pushedImage("web-1", 1)).Obj()},
			pod:        makePod("web-1").ControlledBy("StatefulSet", "web").Obj(),
			wantImages: []string{pushedImage("web-1", 1), "busybox"},
			wantAnns: map[string]string{
				agentv1alpha1.AnnotationRestore: "r", agentv1alpha1.AnnotationRestoreCheckpoint: "web-1", agentv1alpha1.AnnotationRestoreClaim: "web-1",
			},
			wantClaims: []agentv1alpha1.RestoreClaim{{Checkpoint: "web-1", Key: "web-1", Phase: agentv1alpha1.RestoreClaimClaimed, ClaimTime: metav1.NewTime(now)}},
		},
		{
			name:       "deployment pod takes the first free checkpoint, keyed by admission UID",
			restores:   []client.Object{makeRestore("r", "Deployment", "api").Checkpoint("web-0", nil, "app", pushedImage("web-0", 0)).Checkpoint("web-1", nil, "app", pushedImage("web-1", 1)).Obj()},
			pod:        makePod("").GenerateName("api-5d9f8-").ControlledBy("ReplicaSet", "api-5d9f8").Label("pod-template-hash", "5d9f8").Obj(),
			wantImages: []string{pushedImage("web-0", 0), "busybox"},
			wantAnns: map[string]string{
				agentv1alpha1.AnnotationRestore: "r", agentv1alpha1.AnnotationRestoreCheckpoint: "web-0", agentv1alpha1.AnnotationRestoreClaim: "uid-1",
			},
			wantClaims: []agentv1alpha1.RestoreClaim{{Checkpoint: "web-0", Key: "uid-1", Phase: agentv1alpha1.RestoreClaimClaimed, ClaimTime: metav1.NewTime(now)}},
		},
		{
			name:       "finished restore is not applied",
			restores:   []client.Object{makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).Phase(agentv1alpha1.PodRestoreRestored).Obj()},
			pod:        makePod("web-0").ControlledBy("StatefulSet", "web").Obj(),
			wantImages: []string{"livemigrate.io/labapp:latest", "busybox"},
		},
		{
			name:       "ordinal without a checkpoint starts fresh",
			restores:   []client.Object{makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).Obj()},
			pod:        makePod("web-3").ControlledBy("StatefulSet", "web").Obj(),
			wantImages: []string{"livemigrate.io/labapp:latest", "busybox"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, c := newWebhook(t, tc.restores...)
			got := apply(t, tc.pod, w.Handle(context.Background(), request(t, tc.pod, "uid-1")))
			if diff := cmp.Diff(tc.wantImages, images(got)); diff != "" {
				t.Errorf("images (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAnns, got.Annotations, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantClaims, claims(t, c, "r"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if len(tc.wantAnns) > 0 && got.Labels[agentv1alpha1.LabelRestoredFrom] != "r" {
				t.Errorf("restored pod lacks the %s label", agentv1alpha1.LabelRestoredFrom)
			}
		})
	}
}

func gates(p *corev1.Pod) []string {
	var out []string
	for _, g := range p.Spec.SchedulingGates {
		out = append(out, g.Name)
	}
	return out
}

// TestWebhookGatesWhileImagesArePushed checks that a pod claiming a
// checkpoint whose images are not recorded yet is annotated and gated with
// its images left alone, and that a pod claiming a pushed checkpoint is
// rewritten to the images and never gated.
func TestWebhookGatesWhileImagesArePushed(t *testing.T) {
	cases := []struct {
		name       string
		restore    *agentv1alpha1.PodRestore
		pod        *corev1.Pod
		wantGates  []string
		wantImages []string
	}{
		{
			name:       "images not recorded: gated, images untouched",
			restore:    makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", "").Obj(),
			pod:        makePod("web-0").ControlledBy("StatefulSet", "web").Obj(),
			wantGates:  []string{agentv1alpha1.SchedulingGateCheckpointImage},
			wantImages: []string{"livemigrate.io/labapp:latest", "busybox"},
		},
		{
			name:    "images not recorded, pod with another gate: both kept",
			restore: makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", "").Obj(),
			pod: func() *corev1.Pod {
				p := makePod("web-0").ControlledBy("StatefulSet", "web").Obj()
				p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/quota"}}
				return p
			}(),
			wantGates:  []string{"example.com/quota", agentv1alpha1.SchedulingGateCheckpointImage},
			wantImages: []string{"livemigrate.io/labapp:latest", "busybox"},
		},
		{
			name:       "images recorded: rewritten, not gated",
			restore:    makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).Obj(),
			pod:        makePod("web-0").ControlledBy("StatefulSet", "web").Obj(),
			wantImages: []string{pushedImage("web-0", 0), "busybox"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, c := newWebhook(t, tc.restore)
			got := apply(t, tc.pod, w.Handle(context.Background(), request(t, tc.pod, "u")))
			if diff := cmp.Diff(tc.wantGates, gates(got), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("scheduling gates (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantImages, images(got)); diff != "" {
				t.Errorf("images (-want +got):\n%s", diff)
			}
			if got.Annotations[agentv1alpha1.AnnotationRestore] != "r" || got.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint] != "web-0" {
				t.Errorf("annotations = %v, want the pod annotated with its PodRestore and checkpoint", got.Annotations)
			}
			if n := len(claims(t, c, "r")); n != 1 {
				t.Errorf("claims = %d, want 1", n)
			}
		})
	}
}

// TestWebhookGatedRetryIsIdempotent checks that a retried admission of a
// gated pod gets one gate, the same checkpoint and one claim.
func TestWebhookGatedRetryIsIdempotent(t *testing.T) {
	w, c := newWebhook(t, makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", "").Obj())
	pod := makePod("web-0").ControlledBy("StatefulSet", "web").Obj()
	first := apply(t, pod, w.Handle(context.Background(), request(t, pod, "u1")))
	again := apply(t, first, w.Handle(context.Background(), request(t, first, "u2")))
	if diff := cmp.Diff([]string{agentv1alpha1.SchedulingGateCheckpointImage}, gates(again)); diff != "" {
		t.Errorf("scheduling gates after a retry (-want +got):\n%s", diff)
	}
	if n := len(claims(t, c, "r")); n != 1 {
		t.Errorf("claims = %d, want 1", n)
	}
}

func TestWebhookRetryIsIdempotent(t *testing.T) {
	w, c := newWebhook(t, makeRestore("r", "Deployment", "api").Checkpoint("a", nil, "app", pushedImage("a", 0)).Checkpoint("b", nil, "app", pushedImage("b", 1)).Obj())
	pod := makePod("").GenerateName("api-1-").ControlledBy("ReplicaSet", "api-1").Label("pod-template-hash", "1").Obj()
	first := apply(t, pod, w.Handle(context.Background(), request(t, pod, "same-uid")))
	again := apply(t, pod, w.Handle(context.Background(), request(t, pod, "same-uid")))
	if diff := cmp.Diff(images(first), images(again)); diff != "" {
		t.Errorf("a retried admission got another checkpoint (-first +retry):\n%s", diff)
	}
	if n := len(claims(t, c, "r")); n != 1 {
		t.Errorf("claims after a retried admission = %d, want 1", n)
	}
	// A StatefulSet pod re-created under the same name keeps its checkpoint.
	w2, c2 := newWebhook(t, makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).Obj())
	sts := makePod("web-0").ControlledBy("StatefulSet", "web").Obj()
	a := apply(t, sts, w2.Handle(context.Background(), request(t, sts, "u1")))
	b := apply(t, sts, w2.Handle(context.Background(), request(t, sts, "u2")))
	if a.Spec.Containers[0].Image != b.Spec.Containers[0].Image || a.Spec.Containers[0].Image == "livemigrate.io/labapp:latest" {
		t.Errorf("statefulset pod retried: images %q then %q", a.Spec.Containers[0].Image, b.Spec.Containers[0].Image)
	}
	if n := len(claims(t, c2, "r")); n != 1 {
		t.Errorf("claims = %d, want 1", n)
	}
}

func TestWebhookPinsToNode(t *testing.T) {
	w, _ := newWebhook(t, makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).Node("node-7").Obj())
	pod := makePod("web-0").ControlledBy("StatefulSet", "web").Obj()
	got := apply(t, pod, w.Handle(context.Background(), request(t, pod, "u")))
	want := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-7"}}}}},
	}}}
	if diff := cmp.Diff(want, got.Spec.Affinity); diff != "" {
		t.Errorf("affinity (-want +got):\n%s", diff)
	}
}

// admitConcurrently admits n pods made by newPod at once (admission UIDs
// uid-0 …), records in restored the claim keys of each checkpoint they
// were pointed at and returns how many were admitted as fresh starts.
func admitConcurrently(t *testing.T, w *Webhook, n int, newPod func() *corev1.Pod, restored map[string][]string) (fresh int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pod := newPod()
			got := apply(t, pod, w.Handle(context.Background(), request(t, pod, fmt.Sprintf("uid-%d", i))))
			mu.Lock()
			defer mu.Unlock()
			if cp := got.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint]; cp != "" {
				restored[cp] = append(restored[cp], got.Annotations[agentv1alpha1.AnnotationRestoreClaim])
			} else {
				fresh++
			}
		}(i)
	}
	wg.Wait()
	return fresh
}

func TestWebhookConcurrentClaims(t *testing.T) {
	const checkpoints, pods = 5, 40
	b := makeRestore("r", "Deployment", "api")
	for i := 0; i < checkpoints; i++ {
		name := fmt.Sprintf("src-%d", i)
		b.Checkpoint(name, nil, "app", pushedImage(name, i))
	}
	w, c := newWebhook(t, b.Obj())
	restored := map[string][]string{} // checkpoint -> claim keys
	fresh := admitConcurrently(t, w, pods, func() *corev1.Pod {
		return makePod("").GenerateName("api-7-").ControlledBy("ReplicaSet", "api-7").Label("pod-template-hash", "7").Obj()
	}, restored)
	if len(restored) != checkpoints {
		t.Errorf("%d checkpoints consumed, want %d", len(restored), checkpoints)
	}
	for cp, keys := range restored {
		if len(keys) != 1 {
			t.Errorf("checkpoint %s consumed by %d pods: %v", cp, len(keys), keys)
		}
	}
	if fresh != pods-checkpoints {
		t.Errorf("%d pods left unchanged, want %d", fresh, pods-checkpoints)
	}
	got := claims(t, c, "r")
	if len(got) != checkpoints {
		t.Fatalf("status has %d claims, want %d", len(got), checkpoints)
	}
	for _, cl := range got {
		if keys := restored[cl.Checkpoint]; len(keys) != 1 || keys[0] != cl.Key {
			t.Errorf("claim %+v does not match the pod that got the checkpoint (%v)", cl, keys)
		}
	}
}

func TestWebhookIgnoresOtherOperations(t *testing.T) {
	w, c := newWebhook(t, makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).Obj())
	pod := makePod("web-0").ControlledBy("StatefulSet", "web").Obj()
	req := request(t, pod, "u")
	req.Operation = admissionv1.Update
	if resp := w.Handle(context.Background(), req); !resp.Allowed || len(resp.Patches) != 0 {
		t.Errorf("update was changed: %+v", resp)
	}
	dry := request(t, pod, "u")
	dry.DryRun = ptr.To(true)
	if resp := w.Handle(context.Background(), dry); !resp.Allowed || len(resp.Patches) != 0 {
		t.Errorf("dry run consumed a checkpoint: %+v", resp)
	}
	bad := request(t, pod, "u")
	bad.Object.Raw = []byte("{not json")
	if resp := w.Handle(context.Background(), bad); !resp.Allowed {
		t.Errorf("an undecodable pod was denied")
	}
	if n := len(claims(t, c, "r")); n != 0 {
		t.Errorf("claims = %d, want 0", n)
	}
}

// The concurrency test above is only meaningful if the fake client refuses a
// status update from a stale read, as the apiserver does.
func TestFakeClientRefusesStaleStatusUpdate(t *testing.T) {
	_, c := newWebhook(t, makeRestore("r", "Deployment", "api").Checkpoint("a", nil, "app", pushedImage("a", 0)).Obj())
	ctx := context.Background()
	var one, two agentv1alpha1.PodRestore
	_ = c.Get(ctx, client.ObjectKey{Namespace: "db", Name: "r"}, &one)
	_ = c.Get(ctx, client.ObjectKey{Namespace: "db", Name: "r"}, &two)
	one.Status.Phase = agentv1alpha1.PodRestoreRestoring
	if err := c.Status().Update(ctx, &one); err != nil {
		t.Fatal(err)
	}
	two.Status.Phase = agentv1alpha1.PodRestoreFailed
	if err := c.Status().Update(ctx, &two); err == nil {
		t.Fatal("stale status update accepted; the concurrency test proves nothing")
	}
}

// countingReader counts the reads that reach the API server.
type countingReader struct {
	client.Reader
	mu         sync.Mutex
	gets, list int
}

func (r *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.mu.Lock()
	r.gets++
	r.mu.Unlock()
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.mu.Lock()
	r.list++
	r.mu.Unlock()
	return r.Reader.List(ctx, list, opts...)
}

func (r *countingReader) counts() (gets, lists int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets, r.list
}

// staleCache is a cache that stopped at the moment it was taken: it serves
// the PodRestores (resourceVersions included) as they were then, as an
// informer that has not seen the newest events yet does.
type staleCache struct {
	items []agentv1alpha1.PodRestore
}

func snapshot(t *testing.T, c client.Client) *staleCache {
	t.Helper()
	var list agentv1alpha1.PodRestoreList
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	return &staleCache{items: list.Items}
}

func (s *staleCache) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	pr, ok := obj.(*agentv1alpha1.PodRestore)
	if !ok {
		return fmt.Errorf("stale cache serves PodRestores only, not %T", obj)
	}
	for i := range s.items {
		if s.items[i].Namespace == key.Namespace && s.items[i].Name == key.Name {
			s.items[i].DeepCopyInto(pr)
			return nil
		}
	}
	return apierrors.NewNotFound(agentv1alpha1.GroupVersion.WithResource("podrestores").GroupResource(), key.Name)
}

func (s *staleCache) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	l, ok := list.(*agentv1alpha1.PodRestoreList)
	if !ok {
		return fmt.Errorf("stale cache serves PodRestores only, not %T", list)
	}
	var o client.ListOptions
	o.ApplyOptions(opts)
	l.Items = nil
	for i := range s.items {
		if o.Namespace == "" || s.items[i].Namespace == o.Namespace {
			l.Items = append(l.Items, *s.items[i].DeepCopy())
		}
	}
	return nil
}

// Admissions read PodRestores from the cache: the API server sees no read
// for pods of workloads without a restore, nor for a first claim the cache
// is current for.
func TestWebhookReadsFromCache(t *testing.T) {
	w, c := newWebhook(t, makeRestore("r", "StatefulSet", "web").Checkpoint("web-0", ptr.To[int32](0), "app", pushedImage("web-0", 0)).Obj())
	api := &countingReader{Reader: c}
	w.Cache, w.Reader = c, api
	for i := 0; i < 20; i++ {
		other := makePod(fmt.Sprintf("other-%d", i)).ControlledBy("StatefulSet", "other").Obj()
		if resp := w.Handle(context.Background(), request(t, other, fmt.Sprintf("o%d", i))); !resp.Allowed || len(resp.Patches) != 0 {
			t.Fatalf("pod of another workload changed: %+v", resp)
		}
	}
	pod := makePod("web-0").ControlledBy("StatefulSet", "web").Obj()
	got := apply(t, pod, w.Handle(context.Background(), request(t, pod, "u")))
	if got.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint] != "web-0" {
		t.Fatalf("pod not restored: annotations %v", got.Annotations)
	}
	if gets, lists := api.counts(); gets != 0 || lists != 0 {
		t.Errorf("API server reads: %d gets, %d lists; want none (the cache answers)", gets, lists)
	}
}

// A stale cache still consumes each checkpoint exactly once, under
// concurrent pod creations and retried calls: the claim is a write with the
// resourceVersion it was decided on, and a conflict or an answer that writes
// nothing goes back to the API server.
func TestWebhookStaleCacheClaimsOnce(t *testing.T) {
	const checkpoints, pods = 3, 12
	b := makeRestore("r", "Deployment", "api")
	for i := 0; i < checkpoints; i++ {
		name := fmt.Sprintf("src-%d", i)
		b.Checkpoint(name, nil, "app", pushedImage(name, i))
	}
	w, c := newWebhook(t, b.Obj())
	// The cache is taken before any claim and never updated.
	w.Cache = snapshot(t, c)
	newPod := func() *corev1.Pod {
		return makePod("").GenerateName("api-7-").ControlledBy("ReplicaSet", "api-7").Label("pod-template-hash", "7").Obj()
	}
	// One pod first, then the same admission retried: same checkpoint,
	// although the cache does not show the claim.
	first := newPod()
	a := apply(t, first, w.Handle(context.Background(), request(t, first, "uid-first")))
	again := apply(t, first, w.Handle(context.Background(), request(t, first, "uid-first")))
	cpA := a.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint]
	if cpA == "" || cpA != again.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint] {
		t.Fatalf("retried admission: checkpoint %q then %q", cpA, again.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint])
	}
	restored := map[string][]string{cpA: {"uid-first"}}
	fresh := admitConcurrently(t, w, pods, newPod, restored)
	if len(restored) != checkpoints {
		t.Errorf("%d checkpoints consumed, want %d: %v", len(restored), checkpoints, restored)
	}
	for cp, keys := range restored {
		if len(keys) != 1 {
			t.Errorf("checkpoint %s consumed by %d pods: %v", cp, len(keys), keys)
		}
	}
	if fresh != pods-(checkpoints-1) {
		t.Errorf("%d pods left unchanged, want %d", fresh, pods-(checkpoints-1))
	}
	if n := len(claims(t, c, "r")); n != checkpoints {
		t.Errorf("status has %d claims, want %d", n, checkpoints)
	}
}
