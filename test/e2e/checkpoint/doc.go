// Package checkpoint is the lab's end-to-end test of the checkpoint agent:
// a lab app StatefulSet in member1 is frozen, checkpointed through the lab
// node runtime's kubelet API by the real livemigrate-agent, pushed as a
// checkpoint image, and restored in member2 through the restore webhook;
// and the rollback, where the frozen source is thawed and continues.
//
// The lab runs the registry, the node runtimes (test/labnode), the node
// agents and the restore webhooks as its components (test/lab), with
// ServiceAccount tokens bound by the project's own RBAC manifests
// (the chart's member RBAC, manifests/install/member.yaml); the tests write the agents' objects
// (PodCheckpoint, PodRestore) themselves and watch the lab app processes
// on the host.
package checkpoint
