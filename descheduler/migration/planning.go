package migration

import (
	"context"
	"fmt"
	"strings"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	policyv1alpha1 "github.com/karmada-io/karmada/pkg/apis/policy/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// planning resolves the binding, the source and the target, and the pods and
// volumes to move. Each result is written to status once and reused after.
func (r *Reconciler) planning(ctx context.Context, lm *lmv1alpha1.LiveMigration, _ time.Time) (stepResult, error) {
	st := &lm.Status
	if err := r.acquireLock(ctx, lm); err != nil {
		return stay(), err
	}
	rb, err := r.getBinding(ctx, lm)
	if apierrors.IsNotFound(err) {
		return stay(), NewStepFailedError(lmv1alpha1.ReasonBindingNotFound, fmt.Sprintf(
			"%s %s has no ResourceBinding %q: is it propagated by a PropagationPolicy?",
			lm.Spec.WorkloadRef.Kind, lm.Spec.WorkloadRef.Name, BindingName(lm.Spec.WorkloadRef)))
	}
	if err != nil {
		return stay(), err
	}
	st.BindingName = rb.Name

	if st.SourceCluster == "" {
		if len(rb.Spec.Clusters) != 1 {
			return stay(), NewStepFailedError(lmv1alpha1.ReasonNotOnOneCluster, fmt.Sprintf(
				"ResourceBinding %s places the workload on %d clusters (%s); live migration moves a workload that runs on exactly one",
				rb.Name, len(rb.Spec.Clusters), joinClusters(rb)))
		}
		if t := foreignTask(rb, lm); t != nil {
			return stay(), NewStepFailedError(lmv1alpha1.ReasonMigrationInProgress, fmt.Sprintf(
				"ResourceBinding %s is being migrated by another live migration (%s)", rb.Name, t.Message))
		}
		st.SourceCluster = rb.Spec.Clusters[0].Name
	}
	if rb.Spec.Placement != nil && rb.Spec.Placement.ReplicaSchedulingType() == policyv1alpha1.ReplicaSchedulingTypeDuplicated {
		setCondition(st, lm.Generation, lmv1alpha1.ConditionRebound, "Unknown", "DuplicatedPlacement",
			"the PropagationPolicy uses Duplicated replica scheduling, which karmada-scheduler re-runs on every binding change; "+
				"the rebinding relies on the ClusterEviction filter only. Prefer replicaScheduling Divided.", r.Clock.Now())
	}

	if st.TargetCluster == "" {
		target := lm.Spec.TargetCluster
		if target == "" {
			if r.Hooks.Picker == nil {
				return stay(), NewStepFailedError(lmv1alpha1.ReasonNoTarget, "spec.targetCluster is empty and no target picker is configured; set spec.targetCluster")
			}
			plan, err := r.Hooks.Picker.Plan(ctx, rb, st.SourceCluster)
			if err != nil {
				return stay(), err
			}
			if plan.Target == "" {
				var why []string
				for _, c := range plan.Candidates {
					why = append(why, c.Cluster+": "+strings.Join(c.Reasons, "; "))
				}
				return stay(), NewStepFailedError(lmv1alpha1.ReasonNoTarget, "no member cluster can take the workload: "+strings.Join(why, " | "))
			}
			target = plan.Target
		}
		if target == st.SourceCluster {
			return stay(), NewStepFailedError(lmv1alpha1.ReasonTargetIsSource, fmt.Sprintf("the workload already runs on %s; choose another spec.targetCluster", target))
		}
		st.TargetCluster = target
	}
	if err := r.checkTarget(ctx, st.TargetCluster); err != nil {
		return stay(), err
	}

	if len(st.Pods) == 0 {
		info, err := r.Hooks.Workload.Inspect(ctx, st.SourceCluster, lm.Namespace, lm.Spec.WorkloadRef)
		if err != nil {
			return stay(), err
		}
		if len(info.Pods) == 0 {
			return stay(), NewStepFailedError(lmv1alpha1.ReasonNoPods, fmt.Sprintf("%s %s has no running pod in %s", lm.Spec.WorkloadRef.Kind, lm.Spec.WorkloadRef.Name, st.SourceCluster))
		}
		for _, v := range info.Volumes {
			if _, err := r.Hooks.Replication.For(v.StorageClass); err != nil {
				return stay(), err
			}
		}
		for _, p := range info.Pods {
			st.Pods = append(st.Pods, lmv1alpha1.PodMigrationStatus{Name: p.Name, SourceNode: p.Node, Containers: p.Containers})
		}
		for _, v := range info.Volumes {
			st.Volumes = append(st.Volumes, lmv1alpha1.VolumeMigrationStatus{ClaimName: v.ClaimName, StorageClass: v.StorageClass,
				PodName: v.Pod, SourceNode: v.Node})
		}
	}
	if r.Hooks.Compatibility != nil {
		if err := r.Hooks.Compatibility.Check(ctx, migrationOf(lm), podsOf(lm)); err != nil {
			return stay(), err
		}
	}
	return advanceTo(lmv1alpha1.PhasePreCopy), nil
}

// checkTarget fails when the target is not a Ready member cluster.
func (r *Reconciler) checkTarget(ctx context.Context, name string) error {
	c := &clusterv1alpha1.Cluster{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, c); err != nil {
		if apierrors.IsNotFound(err) {
			return NewStepFailedError(lmv1alpha1.ReasonTargetNotFound, fmt.Sprintf("target cluster %q is not a member cluster", name))
		}
		return err
	}
	if !meta.IsStatusConditionTrue(c.Status.Conditions, clusterv1alpha1.ClusterConditionReady) {
		return NewStepFailedError(lmv1alpha1.ReasonTargetNotReady, fmt.Sprintf("target cluster %q is not Ready", name))
	}
	return nil
}

// podsOf returns the hooks' view of the pods recorded in status.
func podsOf(lm *lmv1alpha1.LiveMigration) []Pod {
	pods := make([]Pod, 0, len(lm.Status.Pods))
	for _, p := range lm.Status.Pods {
		pod := Pod{Name: p.Name, Node: p.SourceNode, Containers: p.Containers}
		if lm.Spec.WorkloadRef.Kind == "StatefulSet" {
			pod.Ordinal = ordinal(lm.Spec.WorkloadRef.Name, p.Name)
		}
		pods = append(pods, pod)
	}
	return pods
}

func ordinal(set, pod string) *int32 {
	rest, ok := strings.CutPrefix(pod, set+"-")
	if !ok || rest == "" {
		return nil
	}
	var n int32
	for _, ch := range rest {
		if ch < '0' || ch > '9' {
			return nil
		}
		n = n*10 + (ch - '0')
	}
	return &n
}

func volumesOf(lm *lmv1alpha1.LiveMigration) []Volume {
	vols := make([]Volume, 0, len(lm.Status.Volumes))
	for _, v := range lm.Status.Volumes {
		vols = append(vols, Volume{ClaimName: v.ClaimName, StorageClass: v.StorageClass, Pod: v.PodName, Node: v.SourceNode})
	}
	return vols
}
