package migration

import (
	"context"
	"fmt"
	"sync"
	"time"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// world is a fake of everything the hooks touch: it records every call in
// order and answers from knobs the tests turn.
type world struct {
	mu  sync.Mutex
	log []string

	pods    []Pod
	volumes []Volume

	preCopyDone    bool
	pendingBytes   int64
	bytesPerSecond int64
	preCopyBytes   int64
	estimate       int64

	freezeDone, checkpointDone, pushDone bool
	// frozenAt is when the backend says it froze each pod (none when unset).
	frozenAt        map[string]time.Time
	checkpointBytes int64

	finalSynced     bool
	finalDeltaBytes int64
	// finalSyncUnfrozen counts final syncs requested while a source pod
	// was not reported frozen (a broken invariant).
	finalSyncUnfrozen int

	restored bool
	ready    bool
	// unmutated are target pods admitted without the restore webhook;
	// ungated those it annotated but neither gated nor pointed at the
	// checkpoint images.
	unmutated, ungated []string
	// unreadyNodes are target nodes reported not Ready.
	unreadyNodes []string

	// removeCallsBeforeGone is how many Remove calls answer "not gone yet".
	removeCallsBeforeGone int
	targetPresent         bool

	// abortCallsBeforeDone is how many replication Abort calls answer "still stopping".
	abortCallsBeforeDone int

	thawed map[string]bool
	fail   map[string]error
}

func newWorld() *world {
	return &world{
		pods:            []Pod{{Name: "app-0", Node: "node-a", Containers: []string{"app"}}},
		volumes:         []Volume{{ClaimName: "data-app-0", StorageClass: "standard"}},
		preCopyDone:     true,
		pendingBytes:    1 << 20,
		bytesPerSecond:  100 << 20,
		preCopyBytes:    64 << 20,
		estimate:        8 << 20,
		freezeDone:      true,
		checkpointDone:  true,
		pushDone:        true,
		checkpointBytes: 10 << 20,
		finalSynced:     true,
		finalDeltaBytes: 1 << 20,
		restored:        true,
		ready:           true,
		thawed:          map[string]bool{},
		fail:            map[string]error{},
	}
}

func (w *world) record(call string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, call)
	name := call
	for i := range call {
		if call[i] == ':' {
			name = call[:i]
			break
		}
	}
	return w.fail[name]
}

func (w *world) calls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.log...)
}

func (w *world) count(call string) int {
	n := 0
	for _, c := range w.calls() {
		if c == call {
			n++
		}
	}
	return n
}

func (w *world) hooks() Hooks {
	return Hooks{
		Checkpoint:  checkpointFake{w},
		Replication: ReplicationByStorageClass{Default: replicationFake{w}},
		Restore:     restoreFake{w},
		Workload:    workloadFake{w},
	}
}

type checkpointFake struct{ w *world }

func (f checkpointFake) state() CheckpointState {
	w := f.w
	cs := CheckpointState{Frozen: w.freezeDone}
	cs.Checkpointed = cs.Frozen && w.checkpointDone
	if cs.Checkpointed {
		cs.Bytes = w.checkpointBytes
	}
	cs.Pushed = cs.Checkpointed && w.pushDone
	if cs.Pushed {
		cs.Images = map[string]string{"app": "registry.local/ckpt/app-0:uid"}
	}
	return cs
}

func (f checkpointFake) EstimateSize(_ context.Context, _ Migration, p Pod) (int64, error) {
	return f.w.estimate, f.w.record("estimate:" + p.Name)
}
func (f checkpointFake) Freeze(_ context.Context, _ Migration, p Pod) (CheckpointState, error) {
	cs := f.state()
	if cs.Frozen {
		cs.FrozenAt = f.w.frozenAt[p.Name]
	}
	return cs, f.w.record("freeze:" + p.Name)
}
func (f checkpointFake) Checkpoint(_ context.Context, _ Migration, p Pod) (CheckpointState, error) {
	return f.state(), f.w.record("checkpoint:" + p.Name)
}
func (f checkpointFake) Transfer(_ context.Context, _ Migration, p Pod) (CheckpointState, error) {
	return f.state(), f.w.record("transfer:" + p.Name)
}
func (f checkpointFake) Thaw(_ context.Context, _ Migration, p Pod) (bool, error) {
	if err := f.w.record("thaw:" + p.Name); err != nil {
		return false, err
	}
	f.w.thawed[p.Name] = true
	return true, nil
}
func (f checkpointFake) Release(_ context.Context, _ Migration, p Pod) (bool, error) {
	return true, f.w.record("release:" + p.Name)
}

type replicationFake struct{ w *world }

func (f replicationFake) PreCopy(_ context.Context, _ Migration, v Volume, _ PreCopyOptions) (ReplicationState, error) {
	w := f.w
	return ReplicationState{Rounds: 2, PreCopyBytes: w.preCopyBytes, LastDeltaBytes: w.pendingBytes, PendingBytes: w.pendingBytes,
		BytesPerSecond: w.bytesPerSecond, PreCopyDone: w.preCopyDone}, w.record("precopy:" + v.ClaimName)
}
func (f replicationFake) FinalSync(_ context.Context, _ Migration, v Volume) (ReplicationState, error) {
	if !f.w.freezeDone {
		f.w.finalSyncUnfrozen++
	}
	return ReplicationState{Synced: f.w.finalSynced, FinalDeltaBytes: f.w.finalDeltaBytes}, f.w.record("finalsync:" + v.ClaimName)
}
func (f replicationFake) Progress(_ context.Context, _ Migration, v Volume) (ReplicationState, error) {
	return ReplicationState{}, f.w.record("progress:" + v.ClaimName)
}
func (f replicationFake) Abort(_ context.Context, _ Migration, v Volume, opts AbortOptions) (bool, error) {
	if opts.Force {
		return true, f.w.record("forceAbortReplication:" + v.ClaimName)
	}
	if err := f.w.record("abortReplication:" + v.ClaimName); err != nil {
		return false, err
	}
	if f.w.abortCallsBeforeDone > 0 {
		f.w.abortCallsBeforeDone--
		return false, nil
	}
	return true, nil
}
func (f replicationFake) Complete(_ context.Context, _ Migration, v Volume) (bool, error) {
	return true, f.w.record("completeReplication:" + v.ClaimName)
}

type restoreFake struct{ w *world }

// Prepare records "prepareRestore:<target>" for checkpoints without images
// (at the freeze) and "restoreImages:<target>" once every one has its
// images (after the push, or for a migration rebound after the push).
func (f restoreFake) Prepare(_ context.Context, m Migration, cps []PodCheckpoint) error {
	with := 0
	for _, cp := range cps {
		if cp.Images["app"] != "" {
			with++
		}
	}
	switch with {
	case 0:
		return f.w.record("prepareRestore:" + m.Target)
	case len(cps):
		return f.w.record("restoreImages:" + m.Target)
	}
	return fmt.Errorf("images for %d of %d checkpoints", with, len(cps))
}
func (f restoreFake) Status(_ context.Context, m Migration) (RestoreState, error) {
	rs := RestoreState{Restored: map[string]bool{}, Unmutated: f.w.unmutated, Ungated: f.w.ungated, UnreadyNodes: f.w.unreadyNodes}
	if f.w.restored {
		for _, p := range f.w.pods {
			rs.Restored[p.Name] = true
		}
		f.w.targetPresent = true
	}
	return rs, f.w.record("restoreStatus:" + m.Target)
}
func (f restoreFake) Remove(_ context.Context, m Migration) (bool, error) {
	return true, f.w.record("removeRestore:" + m.Target)
}

type workloadFake struct{ w *world }

func (f workloadFake) Inspect(_ context.Context, cluster, _ string, _ lmv1alpha1.WorkloadReference) (WorkloadInfo, error) {
	return WorkloadInfo{Pods: f.w.pods, Volumes: f.w.volumes}, f.w.record("inspect:" + cluster)
}
func (f workloadFake) Ready(_ context.Context, cluster, _ string, _ lmv1alpha1.WorkloadReference) (bool, error) {
	return f.w.ready, f.w.record("ready:" + cluster)
}
func (f workloadFake) Remove(_ context.Context, cluster, _ string, _ lmv1alpha1.WorkloadReference) (bool, error) {
	if err := f.w.record("removeWorkload:" + cluster); err != nil {
		return false, err
	}
	if f.w.removeCallsBeforeGone > 0 {
		f.w.removeCallsBeforeGone--
		return false, nil
	}
	f.w.targetPresent = false
	return true, nil
}
