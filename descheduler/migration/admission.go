package migration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// ConcurrencyLimitError says a migration must wait for the concurrency budget.
type ConcurrencyLimitError struct {
	// Scope is "global" or the member cluster at its limit.
	Scope  string
	Active int
	Limit  int
}

func (e *ConcurrencyLimitError) Error() string {
	if e.Scope == "global" {
		return fmt.Sprintf("%d live migrations are active, the limit is %d: waiting", e.Active, e.Limit)
	}
	return fmt.Sprintf("%d live migrations involve cluster %s, the limit per cluster is %d: waiting", e.Active, e.Scope, e.Limit)
}

// NewConcurrencyLimitError returns a ConcurrencyLimitError.
func NewConcurrencyLimitError(scope string, active, limit int) error {
	return &ConcurrencyLimitError{Scope: scope, Active: active, Limit: limit}
}

// IsConcurrencyLimit reports whether err is or wraps a ConcurrencyLimitError.
func IsConcurrencyLimit(err error) bool {
	var e *ConcurrencyLimitError
	return errors.As(err, &e)
}

// admission remembers the migrations admitted by this process that the
// informer cache may not show as admitted yet, so that concurrent reconciles
// never admit more than the budget.
type admission struct {
	mu     sync.Mutex
	recent map[types.UID][]string
}

const admissionRetry = 10 * time.Second

// pending admits the migration within the concurrency budget, the one place
// that budget is enforced.
func (r *Reconciler) pending(ctx context.Context, lm *lmv1alpha1.LiveMigration, now time.Time) (stepResult, error) {
	st := &lm.Status
	clusters := []string{}
	if lm.Spec.TargetCluster != "" {
		clusters = append(clusters, lm.Spec.TargetCluster)
	}
	rb, err := r.getBinding(ctx, lm)
	switch {
	case apierrors.IsNotFound(err): // Planning reports it
	case err != nil:
		return stay(), err
	case len(rb.Spec.Clusters) == 1:
		clusters = append(clusters, rb.Spec.Clusters[0].Name)
	}
	if err := r.admit(ctx, lm, clusters); err != nil {
		if IsConcurrencyLimit(err) {
			setCondition(st, lm.Generation, lmv1alpha1.ConditionAdmitted, metav1.ConditionFalse, "ConcurrencyLimit", err.Error(), now)
			return stepResult{wait: admissionRetry}, nil
		}
		return stay(), err
	}
	setCondition(st, lm.Generation, lmv1alpha1.ConditionAdmitted, metav1.ConditionTrue, "Admitted", "within the concurrency budget", now)
	return advanceTo(lmv1alpha1.PhasePlanning), nil
}

func admitted(p lmv1alpha1.LiveMigrationPhase) bool {
	return p != "" && p != lmv1alpha1.PhasePending && !p.IsTerminal()
}

// admit returns a ConcurrencyLimitError when admitting lm (touching
// clusters) would exceed a limit, and records the admission otherwise.
func (r *Reconciler) admit(ctx context.Context, lm *lmv1alpha1.LiveMigration, clusters []string) error {
	maxActive, perCluster := r.Config.MaxActive, r.Config.MaxActivePerCluster
	if maxActive <= 0 && perCluster <= 0 {
		return nil
	}
	a := &r.admission
	a.mu.Lock()
	defer a.mu.Unlock()
	var list lmv1alpha1.LiveMigrationList
	if err := r.Client.List(ctx, &list); err != nil {
		return fmt.Errorf("listing LiveMigrations: %w", err)
	}
	active := map[types.UID][]string{}
	seen := map[types.UID]lmv1alpha1.LiveMigrationPhase{}
	for i := range list.Items {
		o := &list.Items[i]
		seen[o.UID] = o.Status.Phase
		if o.UID != lm.UID && admitted(o.Status.Phase) {
			cl, err := r.admittedClusters(ctx, o)
			if err != nil {
				return err
			}
			active[o.UID] = cl
		}
	}
	for uid, cl := range a.recent {
		if p, ok := seen[uid]; !ok || admitted(p) || p.IsTerminal() {
			delete(a.recent, uid) // the cache caught up, or it is gone
			continue
		}
		if uid != lm.UID {
			active[uid] = cl
		}
	}
	if maxActive > 0 && len(active) >= maxActive {
		return NewConcurrencyLimitError("global", len(active), maxActive)
	}
	if perCluster > 0 {
		for _, c := range clusters {
			n := 0
			for _, cl := range active {
				for _, x := range cl {
					if x == c {
						n++
						break
					}
				}
			}
			if n >= perCluster {
				return NewConcurrencyLimitError(c, n, perCluster)
			}
		}
	}
	if a.recent == nil {
		a.recent = map[types.UID][]string{}
	}
	a.recent[lm.UID] = clusters
	return nil
}

// admittedClusters returns the clusters an admitted migration holds slots
// of: its status's source and target, and until Planning wrote them (it
// does when it ends) the ones admission counted: spec.targetCluster and
// the cluster its binding places the workload on.
func (r *Reconciler) admittedClusters(ctx context.Context, lm *lmv1alpha1.LiveMigration) ([]string, error) {
	var out []string
	add := func(c string) {
		if c != "" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	add(lm.Status.SourceCluster)
	add(lm.Status.TargetCluster)
	add(lm.Spec.TargetCluster)
	if lm.Status.SourceCluster == "" {
		rb, err := r.getBinding(ctx, lm)
		switch {
		case apierrors.IsNotFound(err): // Planning fails it
		case err != nil:
			return nil, fmt.Errorf("reading the binding of admitted LiveMigration %s: %w", lm.Name, err)
		case len(rb.Spec.Clusters) == 1:
			add(rb.Spec.Clusters[0].Name)
		}
	}
	return out, nil
}
