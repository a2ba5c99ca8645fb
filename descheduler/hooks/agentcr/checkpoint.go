package agentcr

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// Checkpoint is the CheckpointHook backed by PodCheckpoint resources.
type Checkpoint struct {
	Clients ClientGetter
	// Destination is where the agent pushes checkpoint images.
	Destination agentv1alpha1.CheckpointDestination
	// RepositoryFor overrides Destination.Repository per target cluster
	// (a registry near the target: the images cross the link once and the
	// target nodes pull them locally).
	RepositoryFor map[string]string
	// TimeoutSeconds bounds each kubelet checkpoint call (0: agent default).
	TimeoutSeconds int32
	// DefaultEstimate is the checkpoint size assumed for a container that
	// declares no memory limit or request.
	DefaultEstimate resource.Quantity
}

var _ migration.CheckpointHook = &Checkpoint{}

// destination returns where the checkpoints of a migration into target are
// pushed. It is recorded in the PodCheckpoint when created, so a migration
// keeps its repository across controller restarts and flag changes.
func (c *Checkpoint) destination(target string) agentv1alpha1.CheckpointDestination {
	d := c.Destination
	if repo, ok := c.RepositoryFor[target]; ok {
		d.Repository = repo
	}
	return d
}

func (c *Checkpoint) key(m migration.Migration, pod migration.Pod) types.NamespacedName {
	return types.NamespacedName{Namespace: m.Namespace, Name: objectName(pod.Name, m.UID)}
}

// EstimateSize sums the memory limits (else requests, else the default) of
// the pod's containers: a checkpoint holds about the process memory.
func (c *Checkpoint) EstimateSize(ctx context.Context, m migration.Migration, p migration.Pod) (int64, error) {
	cl, err := c.Clients.Get(ctx, m.Source)
	if err != nil {
		return 0, err
	}
	pod := &corev1.Pod{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: p.Name}, pod); err != nil {
		return 0, fmt.Errorf("getting pod %s in %s: %w", p.Name, m.Source, err)
	}
	var total int64
	for _, ctr := range pod.Spec.Containers {
		switch {
		case !ctr.Resources.Limits.Memory().IsZero():
			total += ctr.Resources.Limits.Memory().Value()
		case !ctr.Resources.Requests.Memory().IsZero():
			total += ctr.Resources.Requests.Memory().Value()
		default:
			total += c.DefaultEstimate.Value()
		}
	}
	return total, nil
}

// ensure creates the pod's PodCheckpoint when missing and returns it.
func (c *Checkpoint) ensure(ctx context.Context, m migration.Migration, p migration.Pod) (*agentv1alpha1.PodCheckpoint, error) {
	cl, err := c.Clients.Get(ctx, m.Source)
	if err != nil {
		return nil, err
	}
	pc := &agentv1alpha1.PodCheckpoint{}
	key := c.key(m, p)
	err = cl.Get(ctx, key, pc)
	if err == nil {
		return pc, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	pod := &corev1.Pod{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: p.Name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, migration.NewStepFailedError(lmv1alpha1.ReasonPodGone, fmt.Sprintf("source pod %s disappeared before it was checkpointed", p.Name))
		}
		return nil, err
	}
	pc = &agentv1alpha1.PodCheckpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
			Labels:      map[string]string{LabelMigrationUID: string(m.UID)},
			Annotations: map[string]string{AnnotationMigration: m.Name}},
		Spec: agentv1alpha1.PodCheckpointSpec{
			NodeName:       p.Node,
			PodName:        p.Name,
			PodUID:         string(pod.UID),
			Containers:     p.Containers,
			MigrationUID:   string(m.UID),
			Destination:    c.destination(m.Target),
			Action:         agentv1alpha1.CheckpointActionCheckpoint,
			TimeoutSeconds: c.TimeoutSeconds,
		},
	}
	if err := cl.Create(ctx, pc); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating PodCheckpoint %s in %s: %w", key, m.Source, err)
	}
	return pc, nil
}

// state maps a PodCheckpoint's status to the hook's view. A PodCheckpoint
// being deleted fails the step: its archives and images go with it, and
// the agent keeps it (and the pod frozen) until the rollback's Thaw.
func state(pc *agentv1alpha1.PodCheckpoint) (migration.CheckpointState, error) {
	st := pc.Status
	if !pc.DeletionTimestamp.IsZero() {
		return migration.CheckpointState{Message: st.Message}, migration.NewStepFailedError(lmv1alpha1.ReasonCheckpointDeleted,
			fmt.Sprintf("PodCheckpoint %s/%s of pod %s was deleted during the migration", pc.Namespace, pc.Name, pc.Spec.PodName))
	}
	if st.Phase == agentv1alpha1.PodCheckpointFailed {
		return migration.CheckpointState{Message: st.Message}, migration.NewStepFailedError(lmv1alpha1.ReasonCheckpointFailed,
			fmt.Sprintf("checkpoint of pod %s failed: %s", pc.Spec.PodName, st.Message))
	}
	cs := migration.CheckpointState{Message: st.Message}
	switch st.Phase {
	case agentv1alpha1.PodCheckpointFrozen, agentv1alpha1.PodCheckpointCheckpointing:
		cs.Frozen = true
	case agentv1alpha1.PodCheckpointPushing:
		cs.Frozen, cs.Checkpointed = true, true
	case agentv1alpha1.PodCheckpointCheckpointed:
		cs.Frozen, cs.Checkpointed, cs.Pushed = true, true, true
	}
	cs.Frozen = cs.Frozen || meta.IsStatusConditionTrue(st.Conditions, agentv1alpha1.ConditionFrozen)
	if cs.Frozen && st.FrozenAt != nil {
		cs.FrozenAt = st.FrozenAt.Time
	}
	cs.Checkpointed = cs.Checkpointed || meta.IsStatusConditionTrue(st.Conditions, agentv1alpha1.ConditionCheckpointed)
	cs.Pushed = cs.Pushed || meta.IsStatusConditionTrue(st.Conditions, agentv1alpha1.ConditionPushed)
	if cs.Checkpointed {
		for _, ctr := range st.Containers {
			cs.Bytes += ctr.ArchiveSizeBytes
		}
	}
	if cs.Pushed {
		cs.Images = map[string]string{}
		for _, ctr := range st.Containers {
			cs.Images[ctr.Name] = ctr.Image
		}
	}
	return cs, nil
}

// Freeze requests the checkpoint (the agent freezes first) and reports.
func (c *Checkpoint) Freeze(ctx context.Context, m migration.Migration, p migration.Pod) (migration.CheckpointState, error) {
	pc, err := c.ensure(ctx, m, p)
	if err != nil {
		return migration.CheckpointState{}, err
	}
	return state(pc)
}

// Checkpoint reports the checkpoint requested by Freeze.
func (c *Checkpoint) Checkpoint(ctx context.Context, m migration.Migration, p migration.Pod) (migration.CheckpointState, error) {
	return c.Freeze(ctx, m, p)
}

// Transfer reports the push of the checkpoint images.
func (c *Checkpoint) Transfer(ctx context.Context, m migration.Migration, p migration.Pod) (migration.CheckpointState, error) {
	return c.Freeze(ctx, m, p)
}

// setAction moves the PodCheckpoint to action (Thaw or Release) and reports
// whether the agent reached want. A missing PodCheckpoint means there is
// nothing to do: the agent's finalizer keeps a deleted PodCheckpoint that
// froze its pod until its action is Thaw (it thaws first) or Release, so
// one that is gone holds nothing frozen. One being deleted is still set
// and awaited.
func (c *Checkpoint) setAction(ctx context.Context, m migration.Migration, p migration.Pod,
	action agentv1alpha1.CheckpointAction, want agentv1alpha1.PodCheckpointPhase) (bool, error) {
	cl, err := c.Clients.Get(ctx, m.Source)
	if err != nil {
		return false, err
	}
	pc := &agentv1alpha1.PodCheckpoint{}
	if err := cl.Get(ctx, c.key(m, p), pc); err != nil {
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}
	if pc.Spec.Action != action {
		if pc.Spec.Action != agentv1alpha1.CheckpointActionCheckpoint && pc.Spec.Action != "" {
			return false, fmt.Errorf("PodCheckpoint %s/%s already has action %s, cannot change it to %s", pc.Namespace, pc.Name, pc.Spec.Action, action)
		}
		orig := pc.DeepCopy()
		pc.Spec.Action = action
		if err := cl.Patch(ctx, pc, client.MergeFrom(orig)); err != nil {
			return false, fmt.Errorf("setting action %s on PodCheckpoint %s/%s: %w", action, pc.Namespace, pc.Name, err)
		}
		return false, nil
	}
	return pc.Status.Phase == want, nil
}

// Thaw asks the agent to thaw the pod (rollback).
func (c *Checkpoint) Thaw(ctx context.Context, m migration.Migration, p migration.Pod) (bool, error) {
	return c.setAction(ctx, m, p, agentv1alpha1.CheckpointActionThaw, agentv1alpha1.PodCheckpointThawed)
}

// Release asks the agent to delete the archives (success).
func (c *Checkpoint) Release(ctx context.Context, m migration.Migration, p migration.Pod) (bool, error) {
	return c.setAction(ctx, m, p, agentv1alpha1.CheckpointActionRelease, agentv1alpha1.PodCheckpointReleased)
}
