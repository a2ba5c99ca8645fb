// Package report publishes what a node agent knows about its node — that it
// runs, the node's kernel and architecture, its container runtime and
// whether that runtime can restore checkpoints, the cgroup freezer the agent
// found — as a Lease named livemigrate-agent-<node> in the agent's
// namespace, renewed every interval. `kubectl livemigrate doctor` reads it;
// a Lease not renewed within its duration means the agent is not running.
//
// It never writes anything but its own node's Lease.
package report
