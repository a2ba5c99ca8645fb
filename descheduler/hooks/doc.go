// Package hooks groups the in-tree implementations of the state machine's
// hooks: agentcr (checkpoint and restore through the livemigrate-agent's
// PodCheckpoint and PodRestore resources in member clusters) and workload
// (reading and removing Deployments and StatefulSets in member clusters).
package hooks
