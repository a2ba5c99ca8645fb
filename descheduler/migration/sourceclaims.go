package migration

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// SourceClaimPolicy says what becomes of the source cluster's claims of a
// workload once its migration succeeded (the target runs from its own
// verified copy).
type SourceClaimPolicy string

const (
	// SourceClaimRetain keeps each source claim and its volume, marked as
	// the retained copy of the workload: a safety net, and the pre-copy
	// base of a later migration of the same workload back into that cluster
	// (which reuses it, or replaces it when it cannot, but is never blocked
	// by it).
	SourceClaimRetain SourceClaimPolicy = "Retain"
	// SourceClaimDelete deletes each source claim; its volume follows its
	// reclaim policy.
	SourceClaimDelete SourceClaimPolicy = "Delete"
)

// AnnotationSourceClaimPolicy on a LiveMigration overrides the
// descheduler's --source-claim-policy for that migration.
const AnnotationSourceClaimPolicy = "livemigrate.io/source-claim-policy"

// ParseSourceClaimPolicy accepts Retain or Delete (in any case).
func ParseSourceClaimPolicy(s string) (SourceClaimPolicy, error) {
	switch {
	case strings.EqualFold(s, string(SourceClaimRetain)):
		return SourceClaimRetain, nil
	case strings.EqualFold(s, string(SourceClaimDelete)):
		return SourceClaimDelete, nil
	}
	return "", fmt.Errorf("%q is not a source claim policy; write %s or %s", s, SourceClaimRetain, SourceClaimDelete)
}

// SettleOptions tell SourceClaimHook.Settle what to do with a claim.
type SettleOptions struct {
	Policy SourceClaimPolicy
	// WorkloadPods are the migrated workload's source pods: a claim that
	// another pod of the source cluster still mounts is left as it is.
	WorkloadPods []string
}

// SourceClaimHook applies the source claim policy after a successful
// migration (Cleanup). Settle is idempotent; done once the claim is
// marked, deleted (its deletion requested) or left alone.
type SourceClaimHook interface {
	// DefaultPolicy applies to a migration without the annotation.
	DefaultPolicy() SourceClaimPolicy
	Settle(ctx context.Context, m Migration, vol Volume, opts SettleOptions) (done bool, err error)
}

// sourceClaimPolicy is the migration's policy: its annotation when valid,
// else def. A bad annotation is reported in a Warning event that names it
// and what to write; the migration, past its point of no return, goes on.
func (r *Reconciler) sourceClaimPolicy(lm *lmv1alpha1.LiveMigration, def SourceClaimPolicy) SourceClaimPolicy {
	v, ok := lm.Annotations[AnnotationSourceClaimPolicy]
	if !ok {
		return def
	}
	p, err := ParseSourceClaimPolicy(v)
	if err != nil {
		if r.Recorder != nil {
			r.Recorder.Eventf(lm, workloadObject(lm), corev1.EventTypeWarning, "InvalidSourceClaimPolicy", "Cleanup",
				"annotation %s: %v; the descheduler's default %s applies", AnnotationSourceClaimPolicy, err, def)
		}
		return def
	}
	return p
}

// settleSourceClaims applies the policy to every source claim of the
// migration; done once each is settled.
func (r *Reconciler) settleSourceClaims(ctx context.Context, lm *lmv1alpha1.LiveMigration) (bool, error) {
	h := r.Hooks.SourceClaims
	if h == nil {
		return true, nil
	}
	opts := SettleOptions{Policy: r.sourceClaimPolicy(lm, h.DefaultPolicy())}
	for _, pod := range podsOf(lm) {
		opts.WorkloadPods = append(opts.WorkloadPods, pod.Name)
	}
	m := migrationOf(lm)
	done := true
	for _, vol := range volumesOf(lm) {
		ok, err := h.Settle(ctx, m, vol, opts)
		if err != nil {
			return false, fmt.Errorf("settling source claim %s (%s): %w", vol.ClaimName, opts.Policy, err)
		}
		done = done && ok
	}
	return done, nil
}
