// Package checkpoint is the lab's end-to-end test of the checkpoint agent:
// a lab app StatefulSet in member1 is frozen, checkpointed through the lab
// node runtime's kubelet API by the real livemigrate-agent, pushed as a
// checkpoint image, and restored in member2 through the restore webhook;
// and the rollback, where the frozen source is thawed and continues.
//
// The agents run as processes with ServiceAccount tokens bound by the
// project's own RBAC manifests (manifests/agent/rbac.yaml); the node runtime
// (test/labnode) runs in the test binary, one per kwok node.
package checkpoint
