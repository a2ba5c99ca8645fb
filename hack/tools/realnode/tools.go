//go:build tools

// Package tools pins the kubelet that hack/real-node.sh runs as a real node
// of a lab member, at the Kubernetes version of the lab's other binaries
// (hack/tools/lab). It is never compiled into anything.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
)
