// Package upgrade installs, upgrades and uninstalls the Helm chart
// (charts/livemigrate) with the Helm Go SDK against the lab's API servers:
// the host release into member1 (standing in for the cluster that runs the
// Karmada control plane), the karmada release into the Karmada plane and
// the member release into member1, where kube-controller-manager and kwok
// run the rendered Deployments and DaemonSet as pods. It proves that an
// upgrade keeps the CRDs and a running migration's objects, rolls every
// component to the new command line and keeps the webhooks' caBundle
// matching their renewed serving certificates, and states exactly what an
// uninstall leaves behind.
package upgrade
