// Package install proves that the Helm chart (charts/livemigrate) starts:
// it renders the chart with the Helm Go SDK, server-side applies the objects
// to the lab's API servers, starts every component of the lab with the
// command, args and env of its rendered Deployment or DaemonSet instead of
// the lab's own flags, and runs the end-to-end live migration on them.
//
// What a cluster gives a pod and the lab cannot is translated, and only
// that (see launch_test.go): paths inside the pod's volume mounts become the
// lab's directories for those volumes, listen ports the ports the lab
// allocated (every pod has its own network namespace, the lab one
// loopback), the in-cluster API configuration a --kubeconfig, and the
// node's own layout (kubelet address, cgroup layout) flags of the lab's
// node runtime. Every other flag is the rendered one.
package install
