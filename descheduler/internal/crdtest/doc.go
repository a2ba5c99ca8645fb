// Package crdtest checks the generated LiveMigration and PodRestore CRDs the way a
// kube-apiserver does: the CRD must be accepted (its CEL rules compile and
// fit the cost budget), and the CEL rules must accept and reject the objects
// they are meant to. It holds tests only.
package crdtest
