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
// Webhook).
//
// A PodRestore is written at the source's freeze, before its checkpoint
// images are pushed, so that Karmada propagates the workload during the
// push. A pod claiming a checkpoint whose images are not recorded yet is
// annotated as usual and gated (scheduling gate
// agent.livemigrate.io/checkpoint-image, which can only be added at
// creation) with its images left alone: it is neither scheduled nor run.
// Once the PodRestore records the images, the agent's restore controller
// points the containers at them and removes the gate in one update
// (SetImages, Ungate). A pod claiming a checkpoint whose images are recorded
// is rewritten to them and never gated. Pods of workloads without a PodRestore are never
// changed, and every failure admits the pod unchanged: the webhook must never
// block unrelated pods (its configuration also uses failurePolicy Ignore).
package restore
