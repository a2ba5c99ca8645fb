//go:build tools

// Package tools pins the lab's binaries (kube-apiserver, kube-controller-manager,
// kube-scheduler, kubectl, etcd) so that hack/lab-binaries.sh builds them at
// fixed versions. It is never compiled into anything.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
