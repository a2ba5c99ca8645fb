package restore

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// Path is where the webhook is served.
const Path = "/mutate-v1-pod-restore"

// maxClaimAttempts bounds the optimistic-concurrency retries of one claim.
const maxClaimAttempts = 8

// Webhook rewrites new pods of workloads with a pending PodRestore.
//
// Every pod creation of a workload looks its PodRestores up in the informer
// cache (Cache), not on the API server. A claim is a status update with the
// resourceVersion it was decided on, so a stale cache can only make it fail
// with a conflict, never claim a checkpoint twice: after a conflict the
// webhook reads the PodRestore from the API server (Reader) and decides
// again. An answer that writes nothing (the pod's claim already exists after
// a retried call, no checkpoint left, the restore no longer pending) is also
// taken from the API server, so that a stale cache never hands out a
// checkpoint another pod holds or admits a pod unchanged while a checkpoint
// is free. A PodRestore the cache has not seen yet (created a watch latency
// before its pod) is missed: the pod is admitted unchanged, which the
// migration detects and fails (RestoreWebhookBypassed), never a wrong
// restore.
type Webhook struct {
	// Client writes PodRestore status.
	Client client.Client
	// Cache lists PodRestores for each admission: the manager's
	// informer-backed client. Nil means Client.
	Cache client.Reader
	// Reader reads a PodRestore from the API server (the manager's API
	// reader) when a claim must start from the newest status.
	Reader client.Reader
	Clock  clock.PassiveClock
}

var _ admission.Handler = (*Webhook)(nil)

// Handle admits a pod, rewritten when it consumes a checkpoint.
func (w *Webhook) Handle(ctx context.Context, req admission.Request) admission.Response {
	log := klog.FromContext(ctx).WithValues("admissionUID", req.UID, "namespace", req.Namespace)
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Allowed("not a pod creation")
	}
	if req.DryRun != nil && *req.DryRun {
		// Claiming has a side effect (the PodRestore status); a dry run
		// must not consume a checkpoint.
		return admission.Allowed("dry run")
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		// Never block a pod we cannot read.
		log.Error(err, "Cannot decode pod; admitting unchanged")
		observeAdmission(resultError)
		return admission.Allowed("undecodable pod")
	}
	owners, ordinal := podOwners(pod)
	if len(owners) == 0 {
		return admission.Allowed("no workload owner")
	}
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	var list agentv1alpha1.PodRestoreList
	if err := w.cache().List(ctx, &list, client.InNamespace(ns)); err != nil {
		log.Error(err, "Cannot list PodRestores; admitting unchanged")
		observeAdmission(resultError)
		return admission.Allowed("restore lookup failed")
	}
	var candidates []*agentv1alpha1.PodRestore
	for i := range list.Items {
		if matches(&list.Items[i], owners) && pending(&list.Items[i]) {
			candidates = append(candidates, &list.Items[i])
		}
	}
	if len(candidates) == 0 {
		return admission.Allowed("no pending restore")
	}
	// Oldest first: a workload has at most one pending restore in practice.
	sort.Slice(candidates, func(i, j int) bool {
		return candidates[i].CreationTimestamp.Before(&candidates[j].CreationTimestamp)
	})
	key := pod.Name
	if key == "" {
		key = string(req.UID)
	}
	for _, pr := range candidates {
		cp, err := w.claim(ctx, pr, key, ordinal)
		if err != nil {
			log.Error(err, "Cannot claim a checkpoint; admitting unchanged", "podRestore", klog.KObj(pr))
			observeAdmission(resultError)
			continue
		}
		if cp == nil {
			continue
		}
		mutated := pod.DeepCopy()
		rewrite(mutated, pr, cp, key)
		raw, err := json.Marshal(mutated)
		if err != nil {
			observeAdmission(resultError)
			return admission.Allowed("encode failed")
		}
		log.Info("Pod restores from checkpoint", "podRestore", klog.KObj(pr), "checkpoint", cp.Name, "claimKey", key)
		observeAdmission(resultClaimed)
		return admission.PatchResponseFromRaw(req.Object.Raw, raw)
	}
	observeAdmission(resultNoCheckpoint)
	return admission.Allowed("no checkpoint left")
}

// claim records (or finds) the claim of claimKey on the PodRestore cached
// and returns its checkpoint; nil when none is left for this pod. cached is
// the cache's copy: a new claim is written on top of it (a stale copy fails
// with a conflict); anything else is decided from the API server's copy.
func (w *Webhook) claim(ctx context.Context, cached *agentv1alpha1.PodRestore, claimKey string, ordinal *int32) (*agentv1alpha1.RestoreCheckpoint, error) {
	key := client.ObjectKeyFromObject(cached)
	pr, fresh := cached.DeepCopy(), false
	read := func() error {
		latest := &agentv1alpha1.PodRestore{}
		if err := w.Reader.Get(ctx, key, latest); err != nil {
			return err
		}
		pr, fresh = latest, true
		return nil
	}
	var lastErr error
	for attempt := 0; attempt < maxClaimAttempts; {
		var cp *agentv1alpha1.RestoreCheckpoint
		if pending(pr) && findClaim(pr, claimKey) == nil {
			cp = pick(pr, ordinal)
		}
		if cp == nil {
			// Nothing to write: answer from the newest status only.
			if !fresh {
				if err := read(); err != nil {
					return nil, err
				}
				continue
			}
			if !pending(pr) {
				return nil, nil
			}
			if c := findClaim(pr, claimKey); c != nil {
				// A retried call: same pod, same checkpoint.
				return checkpointByName(pr, c.Checkpoint), nil
			}
			return nil, nil
		}
		pr.Status.Claims = append(pr.Status.Claims, agentv1alpha1.RestoreClaim{
			Checkpoint: cp.Name,
			Key:        claimKey,
			Phase:      agentv1alpha1.RestoreClaimClaimed,
			ClaimTime:  metav1.NewTime(w.now()),
		})
		if pr.Status.Phase == "" || pr.Status.Phase == agentv1alpha1.PodRestorePending {
			pr.Status.Phase = agentv1alpha1.PodRestoreRestoring
		}
		err := w.Client.Status().Update(ctx, pr)
		if err == nil {
			return cp.DeepCopy(), nil
		}
		if !apierrors.IsConflict(err) {
			return nil, err
		}
		observeAdmission(resultConflict)
		lastErr = err
		attempt++
		if err := read(); err != nil {
			return nil, err
		}
	}
	return nil, lastErr
}

func (w *Webhook) cache() client.Reader {
	if w.Cache != nil {
		return w.Cache
	}
	return w.Client
}

func (w *Webhook) now() time.Time {
	if w.Clock == nil {
		return time.Now()
	}
	return w.Clock.Now()
}

// Handler returns the webhook as an http.Handler for the manager's webhook
// server.
func (w *Webhook) Handler() http.Handler {
	return &admission.Webhook{Handler: w}
}
