package placementtrigger

import (
	"encoding/json"
	"fmt"
	"strings"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/policy"
)

// Moves reports whether an update of a binding takes the workload off the
// one cluster it runs on: the old binding names exactly one cluster and
// the new one does not name it. It returns that cluster.
func Moves(old, cur *workv1alpha2.ResourceBinding) (string, bool) {
	if len(old.Spec.Clusters) != 1 {
		return "", false
	}
	from := old.Spec.Clusters[0].Name
	return from, !cur.Spec.TargetContains(from)
}

// Hold decides whether an update of the binding of an opted-in workload
// is held (spec.clusters kept, the result recorded) rather than admitted.
// It is admitted when it does not move the workload, when it hands the
// cluster it leaves to a graceful eviction task it adds (a live
// migration's rebinding, Karmada's failover, a drain's or this trigger's
// fallback to Karmada), or when it is the rollback of an active
// LiveMigration of the workload (from its target back to its source). The
// reason is for logs and the admission warning.
func Hold(old, cur *workv1alpha2.ResourceBinding, migrations []lmv1alpha1.LiveMigration) (bool, string) {
	from, moves := Moves(old, cur)
	if !moves {
		return false, "spec.clusters still names the cluster the workload runs on"
	}
	if cur.Spec.ClusterInGracefulEvictionTasks(from) && !old.Spec.ClusterInGracefulEvictionTasks(from) {
		return false, "the update hands cluster " + from + " to a graceful eviction task"
	}
	to := ""
	if len(cur.Spec.Clusters) == 1 {
		to = cur.Spec.Clusters[0].Name
	}
	ref := cur.Spec.Resource
	for i := range migrations {
		lm := &migrations[i]
		if lm.Namespace != cur.Namespace || lm.Spec.WorkloadRef.Kind != ref.Kind || lm.Spec.WorkloadRef.Name != ref.Name || lm.Status.Phase.IsTerminal() {
			continue
		}
		// Its rollback: back from the target to the source. (Its
		// rebinding adds its eviction task, above; any other write from
		// the source to the target, karmada-scheduler's included, would
		// re-create the workload under the migration.)
		if s, t := lm.Status.SourceCluster, lm.Status.TargetCluster; to != "" && s == to && t == from {
			return false, "the rollback of LiveMigration " + lm.Name + " from " + t + " to " + s
		}
	}
	return true, fmt.Sprintf("the workload is opted into live migration: it stays on %s and moves to %s by live migration", from, Names(cur.Spec.Clusters))
}

// Names joins the names of target clusters ("none" when empty).
func Names(clusters []workv1alpha2.TargetCluster) string {
	if len(clusters) == 0 {
		return "none"
	}
	names := make([]string, 0, len(clusters))
	for _, c := range clusters {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// EncodeScheduled is the value of livemigrate.io/scheduled-clusters for a
// scheduling result.
func EncodeScheduled(clusters []workv1alpha2.TargetCluster) string {
	if clusters == nil {
		clusters = []workv1alpha2.TargetCluster{}
	}
	b, _ := json.Marshal(clusters)
	return string(b)
}

// Scheduled returns the held scheduling result of a binding; ok is false
// when there is none. A value that does not parse is an error naming the
// annotation.
func Scheduled(rb *workv1alpha2.ResourceBinding) (clusters []workv1alpha2.TargetCluster, ok bool, err error) {
	v, ok := rb.Annotations[policy.AnnotationScheduledClusters]
	if !ok {
		return nil, false, nil
	}
	if err := json.Unmarshal([]byte(v), &clusters); err != nil {
		return nil, true, fmt.Errorf("ResourceBinding %s/%s: metadata.annotations[%s]: %q is not a JSON list of target clusters: %w",
			rb.Namespace, rb.Name, policy.AnnotationScheduledClusters, v, err)
	}
	return clusters, true, nil
}
