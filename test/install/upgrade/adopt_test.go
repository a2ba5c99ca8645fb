package upgrade

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/livemigrate/livemigrate/test/chart"
	"github.com/livemigrate/livemigrate/test/lab"
)

// TestHandAppliedCRDsAreAdopted: CRDs applied by hand before the chart (the
// lab creates member1's from manifests/crds, as `kubectl apply -f
// manifests/crds/` does) make helm install refuse, naming a CRD and the
// ownership metadata it lacks, and install nothing. After the kubectl label
// and annotate of docs/install.md ("CRDs applied before the chart") the
// install adopts them: the same CRDs (UIDs), now the chart's, and an object
// created before is kept. Uninstalled, they stay with that metadata, and a
// new install adopts them again without any step.
func TestHandAppliedCRDsAreAdopted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	member := testLab.Members[0]
	values := []string{"--set", "installMode=member", "--set", "deschedulerMemberIdentity.kind=User", "--set", "deschedulerMemberIdentity.name=lab-admin", "--create-namespace"}
	install := func() (string, error) {
		return chart.Helm(ctx, root, "install", member.Kubeconfig, memberNamespace, values...)
	}
	uninstall := func() {
		t.Helper()
		if out, err := chart.Helm(ctx, root, "uninstall", member.Kubeconfig, memberNamespace); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}

	for _, name := range memberCRDs {
		crd, err := member.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the lab's CRD %s: %v", name, err)
		}
		if by := crd.GetLabels()["app.kubernetes.io/managed-by"]; by != "" {
			t.Fatalf("CRD %s is managed by %q: the test needs CRDs applied without Helm", name, by)
		}
	}
	uids := crdUIDs(ctx, t, member.Dynamic, memberCRDs)
	pc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "agent.livemigrate.io/v1alpha1", "kind": "PodCheckpoint",
		"metadata": map[string]any{"name": "adopted-checkpoint", "namespace": "default"},
		"spec": map[string]any{
			"nodeName": member.Nodes[0], "podName": "db-0", "migrationUID": "4b7c3f4e-0000-4000-8000-000000000001",
			"destination": map[string]any{"repository": "registry.example.com/livemigrate/checkpoints"},
		},
	}}
	if pc, err = member.Dynamic.Resource(podCheckpointGVR).Namespace("default").Create(ctx, pc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a PodCheckpoint: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := member.Dynamic.Resource(podCheckpointGVR).Namespace("default").Delete(ctx, pc.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting the PodCheckpoint: %v", err)
		}
	})

	// Helm refuses to take over objects it did not create.
	out, err := install()
	if err == nil {
		uninstall()
		t.Fatalf("helm install adopted CRDs that carry no ownership metadata:\n%s", out)
	}
	for _, want := range []string{
		`CustomResourceDefinition "[a-z]+\.agent\.livemigrate\.io" in namespace "" exists and cannot be imported into the current release: invalid ownership metadata`,
		`missing key "app\.kubernetes\.io/managed-by": must be set to "Helm"`,
		`missing key "meta\.helm\.sh/release-name": must be set to "livemigrate"`,
		`missing key "meta\.helm\.sh/release-namespace": must be set to "livemigrate-system"`,
	} {
		if !regexp.MustCompile(want).MatchString(err.Error()) {
			t.Errorf("helm install's error does not match %s: %v", want, err)
		}
	}
	t.Logf("helm install with hand-applied CRDs: %v", err)
	if _, err := member.Client.AppsV1().DaemonSets(memberNamespace).Get(ctx, "livemigrate-agent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused install created the agent DaemonSet (get: %v)", err)
	}

	// docs/install.md: label and annotate them for the release.
	kubectl := func(args ...string) {
		t.Helper()
		args = append([]string{"--kubeconfig", member.Kubeconfig}, args...)
		out, err := exec.CommandContext(ctx, filepath.Join(root, "bin", "kubectl"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	kubectl(append(append([]string{"label", "crd"}, memberCRDs...), "app.kubernetes.io/managed-by=Helm")...)
	kubectl(append(append([]string{"annotate", "crd"}, memberCRDs...), "meta.helm.sh/release-name=livemigrate", "meta.helm.sh/release-namespace="+memberNamespace)...)
	if out, err := install(); err != nil {
		t.Fatalf("helm install after labelling and annotating the CRDs: %v\n%s", err, out)
	}
	if got := crdUIDs(ctx, t, member.Dynamic, memberCRDs); !equalMaps(got, uids) {
		t.Errorf("the install replaced the hand-applied CRDs: UIDs %v, before %v", got, uids)
	}
	for _, name := range memberCRDs {
		crd, err := member.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if crd.GetLabels()["app.kubernetes.io/part-of"] != "livemigrate" || crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s was adopted but not updated to the chart's: labels %v, annotations %v", name, crd.GetLabels(), crd.GetAnnotations())
		}
	}
	checkKept(ctx, t, member.Dynamic, podCheckpointGVR, pc, "")

	// Kept on uninstall with the release's metadata: a new install needs no
	// step.
	uninstall()
	if got := crdUIDs(ctx, t, member.Dynamic, memberCRDs); !equalMaps(got, uids) {
		t.Errorf("helm uninstall deleted the CRDs: UIDs %v, before %v", got, uids)
	}
	if out, err := install(); err != nil {
		t.Fatalf("helm install over the CRDs a previous release left: %v\n%s", err, out)
	}
	checkKept(ctx, t, member.Dynamic, podCheckpointGVR, pc, "")
	uninstall()

	// Leave member1 as the lab made it for the next test: no pod of the
	// releases left.
	err = poll(ctx, 2*time.Minute, func() (bool, error) {
		pods, err := member.Client.CoreV1().Pods(memberNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name"})
		return err == nil && len(pods.Items) == 0, err
	})
	if err != nil {
		t.Errorf("pods of the uninstalled releases are left in %s: %v", memberNamespace, err)
	}
}
