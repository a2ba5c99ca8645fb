package migration

import (
	"context"
	"fmt"
	"strings"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// restoring waits until every checkpoint was consumed by a new target pod
// (the images were recorded in Transfer: the gated pods are released). A
// target pod admitted without its checkpoint (see checkTargetPods) fails the
// step at once: it would start fresh and never restore, and waiting for the
// phase timeout would only keep the source frozen longer.
func (r *Reconciler) restoring(ctx context.Context, lm *lmv1alpha1.LiveMigration) (stepResult, error) {
	st := &lm.Status
	rs, err := r.checkTargetPods(ctx, lm, true)
	if err != nil {
		return stay(), err
	}
	all := true
	for i := range st.Pods {
		st.Pods[i].Restored = rs.Restored[st.Pods[i].Name]
		all = all && st.Pods[i].Restored
	}
	if !all {
		return stay(), nil
	}
	return advanceTo(lmv1alpha1.PhaseVerifying), nil
}

// ReasonTargetNodeNotReady is the failure reason of a migration whose
// target node went NotReady during Restoring or Verifying.
const ReasonTargetNodeNotReady = "TargetNodeNotReady"

// checkTargetPods reads the restore in the target and fails (StepFailedError
// RestoreWebhookBypassed) when a pod of the target workload would start
// fresh instead of restoring: admitted without the restore webhook's
// annotation (the webhook is down or misconfigured and its failure policy,
// Ignore, let the pod in unchanged), in every phase the target workload
// exists in (from the rebinding on), so that such a pod, which runs at once
// on the volume the final sync is writing, is caught before it spoils it;
// and, in Restoring and Verifying (withUngated), annotated but neither gated
// nor given its checkpoint images (a webhook that does not gate). There it
// also fails (TargetNodeNotReady) when a node the restore runs on is not
// Ready, instead of waiting for the phase timeout. The rollback that follows
// keeps the source frozen until the target pods are confirmed gone, which a
// partitioned node's pods are not until it comes back or is deleted: a
// target that may still run is never doubled by a thawed source.
func (r *Reconciler) checkTargetPods(ctx context.Context, lm *lmv1alpha1.LiveMigration, withUngated bool) (RestoreState, error) {
	st := &lm.Status
	rs, err := r.Hooks.Restore.Status(ctx, migrationOf(lm))
	if err != nil {
		return rs, fmt.Errorf("reading the restore in %s: %w", st.TargetCluster, err)
	}
	if len(rs.Unmutated) > 0 {
		return rs, NewStepFailedError(lmv1alpha1.ReasonRestoreWebhookBypassed, fmt.Sprintf(
			"target pod(s) %s in %s were admitted without their checkpoint: the restore webhook did not mutate them "+
				"(is it running, and registered for pod creation in namespace %s?), so they would start fresh",
			strings.Join(rs.Unmutated, ", "), st.TargetCluster, lm.Namespace))
	}
	if withUngated && len(rs.UnreadyNodes) > 0 {
		return rs, NewStepFailedError(ReasonTargetNodeNotReady, fmt.Sprintf(
			"target node(s) %s in %s are not Ready while the workload is restored there; the migration rolls back, and "+
				"the source stays frozen until the target pods are confirmed gone: a partitioned node's pod may still run, "+
				"so if the node does not come back, make sure it is stopped, then delete the Node (or its pods with --force)",
			strings.Join(rs.UnreadyNodes, ", "), st.TargetCluster))
	}
	if withUngated && len(rs.Ungated) > 0 {
		return rs, NewStepFailedError(lmv1alpha1.ReasonRestoreWebhookBypassed, fmt.Sprintf(
			"target pod(s) %s in %s claimed a checkpoint but were admitted neither held by the scheduling gate %s "+
				"nor pointed at the checkpoint images: the restore webhook did not gate them (is it up to date?), so they would start fresh",
			strings.Join(rs.Ungated, ", "), st.TargetCluster, agentv1alpha1.SchedulingGateCheckpointImage))
	}
	return rs, nil
}
