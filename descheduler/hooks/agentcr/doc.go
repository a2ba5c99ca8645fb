// Package agentcr implements the migration package's CheckpointHook and
// RestoreHook by writing the livemigrate-agent's custom resources in member
// clusters: a PodCheckpoint per source pod (action Checkpoint, then Thaw on
// rollback or Release on success) in the source cluster, and one PodRestore
// per migration in the target cluster. Names are derived from the
// migration's UID and every call creates or reads the same objects, so calls
// are idempotent.
//
// It never freezes, thaws or restores anything itself: the agent on the
// named node does, and reports in the resources' status.
package agentcr
