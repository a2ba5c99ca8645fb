package checkpoint

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

func deployment(ns, name, volume string) *appsv1.Deployment {
	sts := statefulSet(ns, name, volume)
	return &appsv1.Deployment{
		ObjectMeta: sts.ObjectMeta,
		Spec: appsv1.DeploymentSpec{
			Replicas: sts.Spec.Replicas, Selector: sts.Spec.Selector, Template: sts.Spec.Template,
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
		},
	}
}

// onlyPod waits for the single pod of a workload and returns its name.
func onlyPod(ctx context.Context, t *testing.T, me *scenario.Cluster, ns, app string) string {
	t.Helper()
	name := ""
	poll(ctx, t, "the pod of "+app+" in "+me.Name, func() (bool, string) {
		var pods corev1.PodList
		if err := me.CR.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
			return false, err.Error()
		}
		if len(pods.Items) != 1 {
			return false, fmt.Sprintf("%d pods", len(pods.Items))
		}
		name = pods.Items[0].Name
		return true, ""
	})
	return name
}

// TestMigrateDeployment: the restore path for pods created with
// generateName (claimed by admission UID, matched to the Deployment through
// its ReplicaSet's pod-template-hash).
func TestMigrateDeployment(t *testing.T) {
	e := requireEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, dst := e.member(0), e.member(1)
	const ns, migration = "e2e-deploy", "mig-e2e-3"
	createNamespace(ctx, t, src, ns)
	createNamespace(ctx, t, dst, ns)
	vol := e.volume(t, ns)
	if err := src.CR.Create(ctx, deployment(ns, "api", vol)); err != nil {
		t.Fatal(err)
	}
	srcName := onlyPod(ctx, t, src, ns, "api")
	pod, srcApp := runningPod(ctx, t, src, ns, srcName, nil)
	waitCounter(ctx, t, srcApp, 100)
	key := client.ObjectKey{Namespace: ns, Name: migration + "-api"}
	if err := src.CR.Create(ctx, podCheckpoint(ns, key.Name, pod, migration, e.registry+"/livemigrate")); err != nil {
		t.Fatal(err)
	}
	pc := waitCheckpoint(ctx, t, src, key, agentv1alpha1.PodCheckpointCheckpointed)
	frozen, inFlight, err := labstate.VerifyRegion(readRegion(t, srcApp))
	if err != nil {
		t.Fatal(err)
	}
	if inFlight != 0 {
		frozen = inFlight
	}
	pr := builder.MakePodRestore(ns, migration, migration, "Deployment", "api").
		Checkpoint(srcName, nil, "app", pc.Status.Containers[0].Image).Obj()
	if err := dst.CR.Create(ctx, pr); err != nil {
		t.Fatal(err)
	}
	if err := dst.CR.Create(ctx, deployment(ns, "api", vol)); err != nil {
		t.Fatal(err)
	}
	dstName := onlyPod(ctx, t, dst, ns, "api")
	tpod, dstApp := runningPod(ctx, t, dst, ns, dstName, func(p *corev1.Pod) error {
		if p.Annotations[agentv1alpha1.AnnotationRestoreCheckpoint] != srcName {
			return fmt.Errorf("pod not restored (annotations %v)", p.Annotations)
		}
		return nil
	})
	if claim := tpod.Annotations[agentv1alpha1.AnnotationRestoreClaim]; claim == "" || claim == tpod.Name {
		t.Errorf("claim key %q: want the admission UID of a generateName pod", claim)
	}
	waitCounter(ctx, t, dstApp, frozen+50)
	if n := agreeWhileFrozen(ctx, t, dstApp); n < frozen+50 {
		t.Errorf("restored deployment pod at %d, want at least %d", n, frozen+50)
	}
	poll(ctx, t, "PodRestore Restored", func() (bool, string) {
		got := &agentv1alpha1.PodRestore{}
		if err := dst.CR.Get(ctx, client.ObjectKeyFromObject(pr), got); err != nil {
			return false, err.Error()
		}
		return got.Status.Phase == agentv1alpha1.PodRestoreRestored && len(got.Status.Claims) == 1 && got.Status.Claims[0].PodName == dstName,
			fmt.Sprintf("phase %s claims %+v", got.Status.Phase, got.Status.Claims)
	})
	setAction(ctx, t, src, key, agentv1alpha1.CheckpointActionRelease)
	waitCheckpoint(ctx, t, src, key, agentv1alpha1.PodCheckpointReleased)
	if err := src.CR.Delete(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
}
