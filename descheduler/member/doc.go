// Package member gives the descheduler clients for member clusters, built
// with the credentials Karmada holds for push-mode clusters: the Cluster's
// spec.apiEndpoint and the token and CA in the Secret its spec.secretRef
// names (in karmada-cluster), exactly as Karmada builds them
// (util.BuildClusterConfig). One client is cached per member and rebuilt when
// the Cluster or its Secret changes.
//
// It never writes to the Karmada control plane and never logs credentials.
package member
