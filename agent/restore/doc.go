// Package restore is the target side of a live migration: a mutating
// admission webhook that makes a new pod of a workload with a pending
// PodRestore start from its checkpoint images.
//
// The webhook claims one checkpoint per pod with an optimistic-concurrency
// update of the PodRestore's status, so that each checkpoint is consumed
// exactly once even when pods are created concurrently or the apiserver
// retries the call: a claim is keyed by the pod's name when it has one (a
// StatefulSet pod, which also picks the checkpoint of its ordinal) and by the
// admission request UID otherwise, and a repeated call with the same key gets
// the same checkpoint. PodRestores are looked up in the informer cache, not
// on the API server; a stale cache only costs a conflict and a re-read (see
// Webhook). Pods of workloads without a PodRestore are never
// changed, and every failure admits the pod unchanged: the webhook must never
// block unrelated pods (its configuration also uses failurePolicy Ignore).
package restore
