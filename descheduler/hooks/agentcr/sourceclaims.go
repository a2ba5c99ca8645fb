package agentcr

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/provision"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// The marks of a claim retained in its source cluster after a successful
// migration (SourceClaims, policy Retain). A later migration of the same
// workload into that cluster adopts such a claim as its pre-copy base, or
// replaces it; any other claim of the same name blocks it.
const (
	// LabelRetained ("true") selects retained claims.
	LabelRetained = "livemigrate.io/retained"
	// AnnotationRetainedFor names the workload the claim is a copy of:
	// <Kind>.<group>/<name> (StatefulSet.apps/db), in the claim's namespace.
	AnnotationRetainedFor = "livemigrate.io/retained-for"
	// AnnotationRetainedClaimUID is the UID of the claim the marks were
	// put on: a claim re-created from a copy of the marked one (a backup, a
	// manifest) is not the retained copy and is never adopted.
	AnnotationRetainedClaimUID = "livemigrate.io/retained-claim-uid"
	// AnnotationRetainedBy names the migration that left it:
	// <namespace>/<name> uid=<uid>.
	AnnotationRetainedBy = "livemigrate.io/retained-by"
	// AnnotationRetainedUntil (RFC 3339), when set, is when the
	// RetentionSweeper deletes the claim.
	AnnotationRetainedUntil = "livemigrate.io/retained-until"
	// AnnotationAdoptedFrom, on a claim a migration adopted, is the
	// AnnotationRetainedBy it carried.
	AnnotationAdoptedFrom = "livemigrate.io/adopted-from"
)

// WorkloadKey is the value of AnnotationRetainedFor for a migration's
// workload.
func WorkloadKey(m migration.Migration) string {
	gv, err := schema.ParseGroupVersion(m.Workload.APIVersion)
	group := gv.Group
	if err != nil {
		group = m.Workload.APIVersion
	}
	kind := m.Workload.Kind
	if group != "" {
		kind += "." + group
	}
	return kind + "/" + m.Workload.Name
}

// SourceClaims is the SourceClaimHook on member clusters' claims: Retain
// marks the source claim (AnnotationRetainedFor and the others) for a
// later migration of the workload back into that cluster; Delete deletes
// it, and the local volume an earlier migration provisioned for it.
type SourceClaims struct {
	Clients ClientGetter
	// Policy is the default (the descheduler's --source-claim-policy).
	Policy migration.SourceClaimPolicy
	// Retention, when positive, is how long a retained claim is kept
	// (AnnotationRetainedUntil; the RetentionSweeper deletes it after);
	// 0 keeps it until it is deleted or adopted.
	Retention time.Duration
	// Clock dates AnnotationRetainedUntil; the real clock when nil.
	Clock clock.PassiveClock
}

var _ migration.SourceClaimHook = &SourceClaims{}

// DefaultPolicy is Policy, Retain when unset.
func (s *SourceClaims) DefaultPolicy() migration.SourceClaimPolicy {
	if s.Policy == "" {
		return migration.SourceClaimRetain
	}
	return s.Policy
}

// Settle applies the policy to the source claim of vol.
func (s *SourceClaims) Settle(ctx context.Context, m migration.Migration, vol migration.Volume, opts migration.SettleOptions) (bool, error) {
	log := klog.FromContext(ctx).WithValues("claim", klog.KRef(m.Namespace, vol.ClaimName), "cluster", m.Source)
	src, err := s.Clients.Get(ctx, m.Source)
	if err != nil {
		return false, err
	}
	c := &corev1.PersistentVolumeClaim{}
	if err := src.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: vol.ClaimName}, c); err != nil {
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}
	if !c.DeletionTimestamp.IsZero() {
		return true, nil
	}
	if same, err := s.targetHasIt(ctx, m, c); err != nil || same {
		return same, err
	}
	user, err := otherUser(ctx, src, c, append(slices.Clone(opts.WorkloadPods), vol.Pod))
	if err != nil {
		return false, err
	}
	if user != "" {
		log.Info("Source claim left as it is: another pod mounts it", "pod", user)
		return true, nil
	}
	switch opts.Policy {
	case migration.SourceClaimDelete:
		var pv *corev1.PersistentVolume
		if c.Spec.VolumeName != "" {
			pv = &corev1.PersistentVolume{}
			if err := src.Get(ctx, types.NamespacedName{Name: c.Spec.VolumeName}, pv); err != nil {
				if !apierrors.IsNotFound(err) {
					return false, err
				}
				pv = nil
			}
		}
		if err := src.Delete(ctx, c, client.Preconditions{UID: &c.UID}); client.IgnoreNotFound(err) != nil {
			return false, fmt.Errorf("deleting claim %s in %s: %w", vol.ClaimName, m.Source, err)
		}
		// A volume an earlier migration provisioned (Retain, like its
		// source's) would be left Released, bound to nothing, forever.
		if pv != nil && pv.Labels[LabelMigrationUID] != "" {
			if err := src.Delete(ctx, pv, client.Preconditions{UID: &pv.UID}); client.IgnoreNotFound(err) != nil {
				return false, fmt.Errorf("deleting volume %s of claim %s in %s: %w", pv.Name, vol.ClaimName, m.Source, err)
			}
		}
		log.V(2).Info("Source claim deleted")
		return true, nil
	case migration.SourceClaimRetain, "":
		by := fmt.Sprintf("%s/%s uid=%s", m.Namespace, m.Name, m.UID)
		if c.Labels[LabelRetained] == "true" && c.Annotations[AnnotationRetainedBy] == by && c.Annotations[AnnotationRetainedClaimUID] == string(c.UID) {
			return true, nil
		}
		orig := c.DeepCopy()
		c.Labels = mergeMaps(c.Labels, map[string]string{LabelRetained: "true"})
		c.Annotations = mergeMaps(c.Annotations, map[string]string{
			AnnotationRetainedFor: WorkloadKey(m), AnnotationRetainedClaimUID: string(c.UID), AnnotationRetainedBy: by,
		})
		delete(c.Annotations, AnnotationRetainedUntil)
		if s.Retention > 0 {
			clk := s.Clock
			if clk == nil {
				clk = clock.RealClock{}
			}
			c.Annotations[AnnotationRetainedUntil] = clk.Now().Add(s.Retention).UTC().Format(time.RFC3339)
		}
		if err := src.Patch(ctx, c, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return false, fmt.Errorf("marking claim %s in %s as retained: %w", vol.ClaimName, m.Source, err)
		}
		log.V(2).Info("Source claim retained")
		return true, nil
	}
	return false, fmt.Errorf("unknown source claim policy %q", opts.Policy)
}

// targetHasIt reports whether the target cluster's claim of that name is
// this very claim (same UID: both clusters are reached through one API
// server): the workload runs on it, so it is left alone.
func (s *SourceClaims) targetHasIt(ctx context.Context, m migration.Migration, c *corev1.PersistentVolumeClaim) (bool, error) {
	dst, err := s.Clients.Get(ctx, m.Target)
	if err != nil {
		return false, err
	}
	t := &corev1.PersistentVolumeClaim{}
	if err := dst.Get(ctx, client.ObjectKeyFromObject(c), t); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return t.UID != "" && t.UID == c.UID, nil
}

// otherUser returns a pod of the claim's namespace, not one of ours and not
// terminating, that mounts the claim ("" when none does).
func otherUser(ctx context.Context, cl client.Client, c *corev1.PersistentVolumeClaim, ours []string) (string, error) {
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace(c.Namespace)); err != nil {
		return "", fmt.Errorf("listing the pods of namespace %s: %w", c.Namespace, err)
	}
	for _, p := range pods.Items {
		if !p.DeletionTimestamp.IsZero() || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || slices.Contains(ours, p.Name) {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == c.Name {
				return p.Name, nil
			}
		}
	}
	return "", nil
}

// retainedFor reports whether the claim is the copy a successful migration
// of m's workload retained in this cluster: marked for this very workload,
// the marks put on this very claim (its UID), not being deleted.
func retainedFor(c *corev1.PersistentVolumeClaim, m migration.Migration) bool {
	return c.Labels[LabelRetained] == "true" && c.Annotations[AnnotationRetainedFor] == WorkloadKey(m) &&
		c.UID != "" && c.Annotations[AnnotationRetainedClaimUID] == string(c.UID) && c.DeletionTimestamp.IsZero()
}

// claimInTheWay is the error of a target claim the migration may neither
// adopt nor replace; the message says what to do.
func claimInTheWay(m migration.Migration, c *corev1.PersistentVolumeClaim) error {
	why := "it is not a copy a migration of " + WorkloadKey(m) + " left there"
	switch {
	case c.Labels[LabelRetained] == "true" && c.Annotations[AnnotationRetainedFor] != WorkloadKey(m):
		why = fmt.Sprintf("it is the retained copy of %s, another workload", c.Annotations[AnnotationRetainedFor])
	case c.Labels[LabelRetained] == "true":
		why = fmt.Sprintf("its retention marks were made for another claim (%s %s, this claim's UID %s)", AnnotationRetainedClaimUID, c.Annotations[AnnotationRetainedClaimUID], c.UID)
	case c.Labels[LabelMigrationUID] != "":
		why = fmt.Sprintf("migration %s provisioned it and did not retain it", c.Labels[LabelMigrationUID])
	}
	return migration.NewStepFailedError(lmv1alpha1.ReasonTargetClaimExists, fmt.Sprintf(
		"claim %s already exists in namespace %s of target cluster %s and %s: delete it there (kubectl -n %s delete pvc %s) if its data is not needed, or migrate to another cluster",
		c.Name, c.Namespace, m.Target, why, c.Namespace, c.Name))
}

// adoptable checks a claim retained for the workload against what the
// migration needs from its pre-copy base: bound to a local volume of this
// project's root on a node that can run the restored pods, large enough.
// It returns the node, or why the claim must be replaced instead.
func (r *Replication) adoptable(ctx context.Context, dst client.Client, c *corev1.PersistentVolumeClaim, srcClaim *corev1.PersistentVolumeClaim, srcPV *corev1.PersistentVolume) (node, why string, err error) {
	if c.Spec.VolumeName == "" {
		return "", "it is not bound", nil
	}
	pv := &corev1.PersistentVolume{}
	if err := dst.Get(ctx, types.NamespacedName{Name: c.Spec.VolumeName}, pv); err != nil {
		if apierrors.IsNotFound(err) {
			return "", "its volume " + c.Spec.VolumeName + " is gone", nil
		}
		return "", "", err
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != c.Namespace || ref.Name != c.Name || (ref.UID != "" && ref.UID != c.UID) {
		return "", "its volume " + pv.Name + " is not bound to it", nil
	}
	if pv.Spec.Local == nil || !underRoot(pv.Spec.Local.Path, r.localRoot()) {
		return "", fmt.Sprintf("its volume %s is not a local volume under %s, where the agents write", pv.Name, r.localRoot()), nil
	}
	if need := provision.ClaimSize(srcClaim, srcPV); pv.Spec.Capacity.Storage().Cmp(need) < 0 {
		return "", fmt.Sprintf("its volume %s holds %s, the source %s", pv.Name, pv.Spec.Capacity.Storage(), need.String()), nil
	}
	node = volumeNode(pv)
	if node == "" {
		return "", "its volume " + pv.Name + " is not pinned to one node", nil
	}
	n := &corev1.Node{}
	if err := dst.Get(ctx, types.NamespacedName{Name: node}, n); err != nil {
		if apierrors.IsNotFound(err) {
			return "", "its node " + node + " is gone", nil
		}
		return "", "", err
	}
	if n.Spec.Unschedulable || !nodeReady(n) || hasNoScheduleTaint(n) {
		return "", "its node " + node + " is not Ready, schedulable and untainted", nil
	}
	return node, "", nil
}

func (r *Replication) localRoot() string {
	if r.LocalRoot == "" {
		return DefaultLocalRoot
	}
	return r.LocalRoot
}

func underRoot(p, root string) bool {
	rel, err := filepath.Rel(filepath.Clean(root), filepath.Clean(p))
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// volumeNode is the one node a local volume's affinity names, else "".
func volumeNode(pv *corev1.PersistentVolume) string {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil || len(pv.Spec.NodeAffinity.Required.NodeSelectorTerms) != 1 {
		return ""
	}
	exprs := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions
	if len(exprs) != 1 || exprs[0].Key != corev1.LabelHostname || exprs[0].Operator != corev1.NodeSelectorOpIn || len(exprs[0].Values) != 1 {
		return ""
	}
	return exprs[0].Values[0]
}

// adopt makes a retained claim and its volume the migration's own: its
// label (which the target agent checks before it writes), the retention
// marks removed. The agent's delta passes then send only what changed.
func adopt(ctx context.Context, dst client.Client, m migration.Migration, c *corev1.PersistentVolumeClaim) error {
	pv := &corev1.PersistentVolume{}
	if err := dst.Get(ctx, types.NamespacedName{Name: c.Spec.VolumeName}, pv); err != nil {
		return fmt.Errorf("reading volume %s of claim %s in %s: %w", c.Spec.VolumeName, c.Name, m.Target, err)
	}
	// The volume first: Abort finds it through the claim once the claim
	// carries the label.
	porig := pv.DeepCopy()
	pv.Labels = mergeMaps(pv.Labels, map[string]string{LabelMigrationUID: string(m.UID)})
	if err := dst.Patch(ctx, pv, client.MergeFromWithOptions(porig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adopting volume %s in %s: %w", pv.Name, m.Target, err)
	}
	orig := c.DeepCopy()
	c.Labels = mergeMaps(c.Labels, map[string]string{LabelMigrationUID: string(m.UID)})
	delete(c.Labels, LabelRetained)
	c.Annotations = mergeMaps(c.Annotations, map[string]string{AnnotationMigration: m.Name, AnnotationAdoptedFrom: c.Annotations[AnnotationRetainedBy]})
	for _, k := range []string{AnnotationRetainedFor, AnnotationRetainedClaimUID, AnnotationRetainedBy, AnnotationRetainedUntil} {
		delete(c.Annotations, k)
	}
	if err := dst.Patch(ctx, c, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adopting claim %s in %s: %w", c.Name, m.Target, err)
	}
	return nil
}

// replace deletes a retained claim that cannot be adopted, and the volume a
// migration provisioned for it.
func replace(ctx context.Context, dst client.Client, m migration.Migration, c *corev1.PersistentVolumeClaim) error {
	return deleteRetained(ctx, dst, m.Target, c)
}

// deleteRetained deletes a retained claim of a cluster, and the volume a
// migration provisioned for it (another volume follows its reclaim policy).
func deleteRetained(ctx context.Context, dst client.Client, cluster string, c *corev1.PersistentVolumeClaim) error {
	if err := dst.Delete(ctx, c, client.Preconditions{UID: &c.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting retained claim %s in %s: %w", c.Name, cluster, err)
	}
	if c.Spec.VolumeName == "" {
		return nil
	}
	pv := &corev1.PersistentVolume{}
	if err := dst.Get(ctx, types.NamespacedName{Name: c.Spec.VolumeName}, pv); err != nil {
		return client.IgnoreNotFound(err)
	}
	if pv.Labels[LabelMigrationUID] == "" {
		return nil // not ours: its reclaim policy decides
	}
	if err := dst.Delete(ctx, pv, client.Preconditions{UID: &pv.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting volume %s of retained claim %s in %s: %w", pv.Name, c.Name, cluster, err)
	}
	return nil
}
