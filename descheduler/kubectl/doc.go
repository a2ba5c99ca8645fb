// Package kubectl is the kubectl-livemigrate plugin (`kubectl livemigrate`):
// move a workload (create a LiveMigration and follow it), show migrations,
// abort one, and plan a move without doing it (the target the controller
// would choose, every cluster's scores, the expected downtime and why the
// other clusters were not chosen). It talks to the Karmada control plane
// with the usual kubeconfig flags.
//
// It never changes anything but LiveMigration objects.
package kubectl
