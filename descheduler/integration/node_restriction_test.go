package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// memberManifest is the chart's member part as make manifests renders it.
const memberManifest = "manifests/install/member.yaml"

// agentNamespace is the namespace memberManifest installs the agent into.
const agentNamespace = "livemigrate-system"

// rbacKinds are the kinds of memberManifest applyMemberRBAC creates.
var rbacKinds = map[string]bool{"ServiceAccount": true, "ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true}

// applyMemberRBAC creates the agents' namespace and the identities and RBAC
// of memberManifest in it (the API server authorizes with RBAC), with the
// descheduler's ClusterRole and Role bound to the admin (its push-mode
// identity here).
func applyMemberRBAC(ctx context.Context) error {
	data, err := os.ReadFile("../../" + memberManifest)
	if err != nil {
		return err
	}
	if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		o := &unstructured.Unstructured{}
		if err := dec.Decode(&o.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%s: %w", memberManifest, err)
		}
		if !rbacKinds[o.GetKind()] {
			continue
		}
		if err := k.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s of %s: %w", o.GetKind(), o.GetName(), memberManifest, err)
		}
	}
	subjects := []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "admin"}}
	for _, b := range []client.Object{
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "livemigrate-descheduler-member"}, Subjects: subjects,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "livemigrate-descheduler-member"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: agentNamespace, Name: "livemigrate-descheduler-member"}, Subjects: subjects,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "livemigrate-descheduler-member"}},
	} {
		if err := k.Create(ctx, b); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// registerNodeRestriction creates the agents' ValidatingAdmissionPolicy and
// its binding exactly as the chart renders them.
func registerNodeRestriction(t *testing.T, ctx context.Context) {
	t.Helper()
	data, err := os.ReadFile("../../" + memberManifest)
	if err != nil {
		t.Fatal(err)
	}
	var policy *admissionregistrationv1.ValidatingAdmissionPolicy
	var binding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", memberManifest, err)
		}
		raw, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		switch doc["kind"] {
		case "ValidatingAdmissionPolicy":
			policy = &admissionregistrationv1.ValidatingAdmissionPolicy{}
			err = json.Unmarshal(raw, policy)
		case "ValidatingAdmissionPolicyBinding":
			binding = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			err = json.Unmarshal(raw, binding)
		}
		if err != nil {
			t.Fatalf("%s: %v", memberManifest, err)
		}
	}
	if policy == nil || binding == nil {
		t.Fatalf("%s has no ValidatingAdmissionPolicy and binding for the agents", memberManifest)
	}
	for _, o := range []client.Object{policy, binding} {
		if err := k.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// agentClient returns a client authenticated as the agent's ServiceAccount
// with a token bound to pod (nil: bound to nothing, as a token of the
// TokenRequest API without a bound object).
func agentClient(t *testing.T, ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) client.Client {
	t.Helper()
	return serviceAccountClient(t, ctx, cs, agentNamespace, "livemigrate-agent", pod)
}

// serviceAccountClient returns a client authenticated as a ServiceAccount,
// with a token bound to pod (nil: bound to nothing).
func serviceAccountClient(t *testing.T, ctx context.Context, cs kubernetes.Interface, namespace, name string, pod *corev1.Pod) client.Client {
	t.Helper()
	spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}
	if pod != nil {
		spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of ServiceAccount %s/%s: %v", namespace, name, err)
	}
	cfg := rest.CopyConfig(shared.cfg)
	cfg.BearerToken = tr.Status.Token
	c, err := client.New(cfg, client.Options{Scheme: testScheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAgentNodeRestriction runs the chart's node restriction policy in a
// real kube-apiserver: an agent whose token the kubelet would project into
// its pod on node A (a token bound to a pod on A) changes the status, and
// the finalizers, of node A's PodCheckpoint and VolumeReplication; the same
// agent is refused node B's, with a message naming both nodes; a token of
// the agent's ServiceAccount bound to no pod is refused; other identities
// are not restricted.
func TestAgentNodeRestriction(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	registerNodeRestriction(t, ctx)
	cs, err := kubernetes.NewForConfig(shared.cfg)
	if err != nil {
		t.Fatal(err)
	}
	const tenant = "node-restriction"
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNamespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: agentNamespace, Name: "livemigrate-agent"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "restricted-node-a"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "restricted-node-b"}},
	} {
		if err := k.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: agentNamespace, Name: "livemigrate-agent-restricted-a"},
		Spec: corev1.PodSpec{NodeName: "restricted-node-a", ServiceAccountName: "livemigrate-agent",
			Containers: []corev1.Container{{Name: "agent", Image: "livemigrate-agent"}}},
	}
	if err := k.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	objs := map[string][]client.Object{}
	for _, node := range []string{"restricted-node-a", "restricted-node-b"} {
		pc := &agentv1alpha1.PodCheckpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "pc-" + node},
			Spec: agentv1alpha1.PodCheckpointSpec{NodeName: node, PodName: "db-0", MigrationUID: "mig-restricted",
				Destination: agentv1alpha1.CheckpointDestination{Repository: "registry.example.com/livemigrate"}},
		}
		vr := &agentv1alpha1.VolumeReplication{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "vr-" + node},
			Spec: agentv1alpha1.VolumeReplicationSpec{MigrationUID: "mig-restricted", Role: agentv1alpha1.ReplicationRoleTarget,
				NodeName: node, ClaimName: "data-db-0", TLSSecretRef: corev1.SecretReference{Name: "replication-tls"}},
		}
		for _, o := range []client.Object{pc, vr} {
			if err := k.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		objs[node] = []client.Object{pc, vr}
	}
	agentA := agentClient(t, ctx, cs, pod)

	// setStatus changes the object's status as c; finalize adds a finalizer
	// (what the agent updates on the object itself).
	setStatus := func(c client.Client, o client.Object, msg string) error {
		fresh := o.DeepCopyObject().(client.Object)
		if err := k.Get(ctx, client.ObjectKeyFromObject(o), fresh); err != nil {
			return err
		}
		switch x := fresh.(type) {
		case *agentv1alpha1.PodCheckpoint:
			x.Status.Message = msg
		case *agentv1alpha1.VolumeReplication:
			x.Status.Message = msg
		}
		return c.Status().Update(ctx, fresh)
	}
	finalize := func(c client.Client, o client.Object) error {
		fresh := o.DeepCopyObject().(client.Object)
		if err := k.Get(ctx, client.ObjectKeyFromObject(o), fresh); err != nil {
			return err
		}
		fresh.SetFinalizers(append(fresh.GetFinalizers(), "agent.livemigrate.io/test"))
		return c.Update(ctx, fresh)
	}
	refused := func(err error) bool { return apierrors.IsForbidden(err) || apierrors.IsInvalid(err) }

	// The policy takes effect once the API server has loaded it: wait for
	// the first refusal.
	pcB := objs["restricted-node-b"][0]
	var last error
	for {
		last = setStatus(agentA, pcB, "forged by node a")
		if refused(last) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the agent of node A could still change node B's PodCheckpoint after waiting for the policy: %v", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if msg := last.Error(); !strings.Contains(msg, "may not change podcheckpoints of node restricted-node-b") || !strings.Contains(msg, "restricted-node-a") {
		t.Errorf("refusal %q does not name the resource and both nodes", msg)
	}
	for _, o := range objs["restricted-node-a"] {
		if err := setStatus(agentA, o, "written by node a"); err != nil {
			t.Errorf("the agent of node A could not change the status of %T %s of its own node: %v", o, o.GetName(), err)
		}
	}
	if err := finalize(agentA, objs["restricted-node-a"][0]); err != nil {
		t.Errorf("the agent of node A could not update its own node's PodCheckpoint: %v", err)
	}
	for _, o := range objs["restricted-node-b"] {
		if err := setStatus(agentA, o, "forged by node a"); !refused(err) {
			t.Errorf("the agent of node A changed the status of %T %s of node B: %v", o, o.GetName(), err)
		}
	}
	if err := finalize(agentA, pcB); !refused(err) {
		t.Errorf("the agent of node A updated node B's PodCheckpoint: %v", err)
	}
	unbound := agentClient(t, ctx, cs, nil)
	if err := setStatus(unbound, objs["restricted-node-a"][0], "unbound"); !refused(err) || !strings.Contains(err.Error(), "names no node") {
		t.Errorf("a token of the agent's ServiceAccount bound to no node: %v, want a refusal saying it names no node", err)
	}
	// Anyone else (here the admin) is not restricted by the policy.
	if err := setStatus(k, pcB, "written by the admin"); err != nil {
		t.Errorf("the admin could not change node B's PodCheckpoint: %v", err)
	}
}
