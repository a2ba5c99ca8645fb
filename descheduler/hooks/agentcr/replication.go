package agentcr

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/provision"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// Replication is the ReplicationHook backed by the agent's VolumeReplication
// resources: per volume a Target one in the target cluster (its receiver,
// on the node the restored pod will run on, writing into a pre-provisioned
// claim of the same name) and a Source one in the source cluster (the rsync
// passes from the node of the pod mounting the claim), both bound to the
// migration's mutual-TLS credentials kept in a Secret on each side, in
// the agents' own namespace of that cluster (never the workload's, where
// the tenant could read or write it).
type Replication struct {
	Clients ClientGetter
	// AgentNamespace is the namespace the agents run in, in every member
	// cluster but those AgentNamespaceFor names; the credentials Secrets
	// are written there. Default DefaultAgentNamespace.
	AgentNamespace string
	// AgentNamespaceFor overrides AgentNamespace per member cluster.
	AgentNamespaceFor map[string]string
	// Validity of the per-migration credentials.
	Validity time.Duration
	// LocalRoot is the directory of the target nodes under which volumes
	// for node-local (local/hostPath) source volumes are created; it must
	// be one of the agents' --replication-target-roots. Default
	// DefaultLocalRoot.
	LocalRoot string
}

// DefaultLocalRoot is the agents' default --replication-target-roots.
const DefaultLocalRoot = "/var/lib/livemigrate/volumes"

// DefaultAgentNamespace is the agents' default namespace (the chart's
// member release namespace).
const DefaultAgentNamespace = "livemigrate-system"

// agentNamespace is the namespace of the agents of a member cluster, where
// its share of the credentials lives.
func (r *Replication) agentNamespace(cluster string) string {
	if ns := r.AgentNamespaceFor[cluster]; ns != "" {
		return ns
	}
	if r.AgentNamespace != "" {
		return r.AgentNamespace
	}
	return DefaultAgentNamespace
}

var _ migration.ReplicationHook = &Replication{}

// tlsSecretName is the name of the migration's credentials Secret: the
// whole UID, since the agents' namespace holds the Secrets of every
// migration of every namespace.
func tlsSecretName(m migration.Migration) string { return "replication-tls-" + string(m.UID) }

// secretKey is where the credentials of cluster's side live.
func (r *Replication) secretKey(m migration.Migration, cluster string) types.NamespacedName {
	return types.NamespacedName{Namespace: r.agentNamespace(cluster), Name: tlsSecretName(m)}
}

// secretMeta marks a credentials Secret for the migration: the agents use
// it only for VolumeReplications of that UID in the workload's namespace.
func secretMeta(m migration.Migration, key types.NamespacedName) metav1.ObjectMeta {
	om := objectMeta(m, key)
	om.Labels[certs.LabelMigrationNamespace] = m.Namespace
	return om
}

func (r *Replication) key(m migration.Migration, vol migration.Volume, role string) types.NamespacedName {
	return types.NamespacedName{Namespace: m.Namespace, Name: objectName(vol.ClaimName+"-"+role, m.UID)}
}

func objectMeta(m migration.Migration, key types.NamespacedName) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
		Labels:      map[string]string{LabelMigrationUID: string(m.UID)},
		Annotations: map[string]string{AnnotationMigration: m.Name}}
}

// ensureSecrets mints the credentials once, into the source cluster's
// Secret, and copies the target's share into the target cluster, each in
// that cluster's agent namespace. A Secret of that name this migration did
// not create is never adopted, in either cluster: the migration fails with
// ReplicationSecretConflict (see secretConflict).
func (r *Replication) ensureSecrets(ctx context.Context, src, dst client.Client, m migration.Migration) error {
	skey, tkey := r.secretKey(m, m.Source), r.secretKey(m, m.Target)
	s := &corev1.Secret{}
	if err := src.Get(ctx, skey, s); apierrors.IsNotFound(err) {
		b, err := certs.Mint(certs.Options{MigrationUID: string(m.UID), Validity: r.Validity})
		if err != nil {
			return fmt.Errorf("minting the replication credentials: %w", err)
		}
		s = &corev1.Secret{ObjectMeta: secretMeta(m, skey), Type: corev1.SecretTypeOpaque, Data: b.SecretData()}
		// The source agent needs only its own key.
		delete(s.Data, certs.SecretKeyTargetKey)
		full := b.SecretData()
		if err := src.Create(ctx, s); apierrors.IsAlreadyExists(err) {
			// Created since the Get: never trusted.
			if _, err := r.existingSecret(ctx, src, skey, m, m.Source, nil); err != nil {
				return err
			}
			return fmt.Errorf("replication credentials of %s in %s were created meanwhile; minting them again", m.Name, m.Source)
		} else if err != nil {
			return fmt.Errorf("creating Secret %s in %s: %w", skey, m.Source, err)
		}
		t := &corev1.Secret{ObjectMeta: secretMeta(m, tkey), Type: corev1.SecretTypeOpaque, Data: map[string][]byte{
			certs.SecretKeyCA: full[certs.SecretKeyCA], certs.SecretKeyTargetCert: full[certs.SecretKeyTargetCert],
			certs.SecretKeyTargetKey: full[certs.SecretKeyTargetKey]}}
		if err := dst.Create(ctx, t); apierrors.IsAlreadyExists(err) {
			// A target share of an earlier mint (its source Secret was
			// replaced), or someone else's; or the Secret just created,
			// when both clusters are one API server.
			replaced, err := r.existingSecret(ctx, dst, tkey, m, m.Target, full[certs.SecretKeyCA])
			if err != nil || !replaced {
				return err
			}
			t.ResourceVersion = ""
			if err := dst.Create(ctx, t); err != nil {
				return fmt.Errorf("creating Secret %s in %s: %w", tkey, m.Target, err)
			}
		} else if err != nil {
			return fmt.Errorf("creating Secret %s in %s: %w", tkey, m.Target, err)
		}
		return nil
	} else if err != nil {
		return err
	}
	if !ownSecret(s, m) {
		return secretConflict(s, m, m.Source)
	}
	t := &corev1.Secret{}
	if err := dst.Get(ctx, tkey, t); apierrors.IsNotFound(err) {
		// The source Secret exists but the target's share was lost (a crash
		// between the two creates): the target key is not kept on the source,
		// so mint again and replace both.
		if err := src.Delete(ctx, s, client.Preconditions{UID: &s.UID}); client.IgnoreNotFound(err) != nil {
			return err
		}
		return fmt.Errorf("replication credentials of %s were incomplete; minting them again", m.Name)
	} else if err != nil {
		return err
	}
	if !ownSecret(t, m) {
		return secretConflict(t, m, m.Target)
	}
	return nil
}

// existingSecret handles a create that found the credentials' Secret in
// place. One of this migration's own holding the CA just minted (ca) is the
// one just created (one API server for both clusters): kept. One of an
// earlier mint is deleted (replaced is true) so that the caller can create
// it again. Anyone else's fails the migration.
func (r *Replication) existingSecret(ctx context.Context, cl client.Client, key types.NamespacedName, m migration.Migration, cluster string, ca []byte) (replaced bool, err error) {
	s := &corev1.Secret{}
	if err := cl.Get(ctx, key, s); err != nil {
		return false, fmt.Errorf("getting Secret %s in %s: %w", key, cluster, err)
	}
	if !ownSecret(s, m) {
		return false, secretConflict(s, m, cluster)
	}
	if ca != nil && bytes.Equal(s.Data[certs.SecretKeyCA], ca) {
		return false, nil
	}
	if err := cl.Delete(ctx, s, client.Preconditions{UID: &s.UID}); client.IgnoreNotFound(err) != nil {
		return false, fmt.Errorf("deleting Secret %s of an earlier attempt in %s: %w", key, cluster, err)
	}
	return true, nil
}

// ownSecret tells whether s carries the marks this migration puts on the
// Secrets it creates.
func ownSecret(s *corev1.Secret, m migration.Migration) bool {
	return s.Labels[LabelMigrationUID] == string(m.UID) && s.Labels[certs.LabelMigrationNamespace] == m.Namespace &&
		s.Annotations[AnnotationMigration] == m.Name
}

// deleteSecret deletes the migration's credentials in one cluster; done
// once they are gone. A Secret of that name the migration did not create
// is left alone (and counts as gone).
func (r *Replication) deleteSecret(ctx context.Context, cl client.Client, m migration.Migration, cluster string) (bool, error) {
	s := &corev1.Secret{}
	if err := cl.Get(ctx, r.secretKey(m, cluster), s); apierrors.IsNotFound(err) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	if !ownSecret(s, m) {
		return true, nil
	}
	if s.DeletionTimestamp.IsZero() {
		if err := cl.Delete(ctx, s, client.Preconditions{UID: &s.UID}); client.IgnoreNotFound(err) != nil {
			return false, fmt.Errorf("deleting the replication credentials %s/%s in %s: %w", s.Namespace, s.Name, cluster, err)
		}
	}
	return false, nil
}

// secretConflict is the failure for a credentials Secret this migration
// did not create: adopting it would make whoever wrote it an accepted peer
// of the agents' replication.
func secretConflict(s *corev1.Secret, m migration.Migration, cluster string) error {
	return migration.NewStepFailedError(lmv1alpha1.ReasonReplicationSecretConflict, fmt.Sprintf(
		"Secret %s in namespace %s of cluster %s was not created by this migration (UID %s), so its credentials are not used: "+
			"find out who created it (kubectl -n %s get secret %s -o yaml), delete it, and create the LiveMigration again",
		s.Name, s.Namespace, cluster, m.UID, s.Namespace, s.Name))
}

// prepareTarget chooses the node of the target cluster that receives the
// volume (and runs the restored pods) and makes sure the claim of the same
// name there is the migration's own. A claim already in the target is
//
//   - the migration's own (labelled with its UID): kept;
//   - the copy a successful migration of the same workload retained there
//     (retainedFor): adopted as the pre-copy base when its local volume
//     can be written and is on the node chosen, so that the delta passes
//     send only what changed since; otherwise deleted (replace) and
//     provisioned again, note saying so while it goes;
//   - anything else (a user's claim of the same name): the migration fails
//     with TargetClaimExists, saying what to do.
//
// A retained or terminating claim that a pod mounts fails it with
// TargetClaimInUse.
//
// A new claim is built from the source's (provision.Build): same name,
// class, access modes and size, and for a node-local (local/hostPath)
// source volume a local PersistentVolume on the target node under
// LocalRoot, pre-bound to it. Both carry the migration's label.
func (r *Replication) prepareTarget(ctx context.Context, src, dst client.Client, m migration.Migration, vol migration.Volume) (node, note string, err error) {
	key := types.NamespacedName{Namespace: m.Namespace, Name: vol.ClaimName}
	if node, err = replicationNode(ctx, dst, m); err != nil {
		return "", "", err
	}
	existing := &corev1.PersistentVolumeClaim{}
	if err := dst.Get(ctx, key, existing); apierrors.IsNotFound(err) {
		existing = nil
	} else if err != nil {
		return "", "", err
	}
	if existing != nil && existing.Labels[LabelMigrationUID] == string(m.UID) {
		if node == "" {
			// Provisioned or adopted before a restart, no receiver yet:
			// where its local volume is.
			if node, err = claimNode(ctx, dst, existing); err != nil {
				return "", "", err
			}
		}
		if node == "" {
			node, err = TargetNode(ctx, dst, m)
		}
		return node, "", err
	}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := src.Get(ctx, key, pvc); err != nil {
		return "", "", fmt.Errorf("reading claim %s in %s: %w", vol.ClaimName, m.Source, err)
	}
	if existing != nil && existing.UID != "" && existing.UID == pvc.UID {
		// The source claim itself: both clusters are reached through
		// one API server, so there is nothing to provision (and nothing
		// the migration may delete).
		if node == "" {
			node, err = TargetNode(ctx, dst, m)
		}
		return node, "", err
	}
	if existing != nil && (!existing.DeletionTimestamp.IsZero() || retainedFor(existing, m)) {
		// Never written to, nor waited for, while a pod uses it.
		user, err := otherUser(ctx, dst, existing, nil)
		if err != nil {
			return "", "", err
		}
		if user != "" {
			return "", "", migration.NewStepFailedError(lmv1alpha1.ReasonTargetClaimInUse, fmt.Sprintf(
				"claim %s in namespace %s of target cluster %s is mounted by pod %s: delete that pod (or wait for it to end), then migrate again",
				existing.Name, existing.Namespace, m.Target, user))
		}
	}
	if existing != nil && !existing.DeletionTimestamp.IsZero() {
		return "", fmt.Sprintf("waiting for claim %s in %s to be deleted", vol.ClaimName, m.Target), nil
	}
	if existing != nil && !retainedFor(existing, m) {
		return "", "", claimInTheWay(m, existing)
	}
	var pv *corev1.PersistentVolume
	if pvc.Spec.VolumeName != "" {
		pv = &corev1.PersistentVolume{}
		if err := src.Get(ctx, types.NamespacedName{Name: pvc.Spec.VolumeName}, pv); err != nil {
			return "", "", fmt.Errorf("reading volume %s of claim %s in %s: %w", pvc.Spec.VolumeName, vol.ClaimName, m.Source, err)
		}
	}
	if existing != nil {
		at, why, err := r.adoptable(ctx, dst, existing, pvc, pv)
		if err != nil {
			return "", "", err
		}
		if why == "" && node != "" && at != node {
			why = fmt.Sprintf("its volume is on node %s, the migration's other volumes on %s", at, node)
		}
		log := klog.FromContext(ctx).WithValues("claim", klog.KObj(existing), "cluster", m.Target)
		if why == "" {
			if err := adopt(ctx, dst, m, existing); err != nil {
				return "", "", err
			}
			log.Info("Adopted the retained claim as the pre-copy base", "node", at, "retainedBy", existing.Annotations[AnnotationAdoptedFrom])
			return at, "", nil
		}
		if err := replace(ctx, dst, m, existing); err != nil {
			return "", "", err
		}
		log.Info("Replacing the retained claim", "reason", why)
		return "", fmt.Sprintf("replacing claim %s retained in %s by an earlier migration (%s)", vol.ClaimName, m.Target, why), nil
	}
	if node == "" {
		if node, err = TargetNode(ctx, dst, m); err != nil {
			return "", "", err
		}
	}
	claim, tpv, err := provision.Build(pvc, pv, provision.Options{MigrationUID: string(m.UID), TargetNodeName: node, LocalRoot: r.localRoot()})
	if err != nil {
		return "", "", migration.NewStepFailedError(lmv1alpha1.ReasonTargetClaim, fmt.Sprintf("cannot pre-provision claim %s in %s: %v", vol.ClaimName, m.Target, err))
	}
	claim.Annotations = mergeMaps(claim.Annotations, map[string]string{AnnotationMigration: m.Name})
	if tpv != nil {
		// Bound from both sides: the claim can bind to no other volume, and
		// the binder does not have to find the volume first.
		claim.Spec.VolumeName = tpv.Name
		tpv.Annotations = mergeMaps(tpv.Annotations, map[string]string{AnnotationMigration: m.Name})
		if err := dst.Create(ctx, tpv); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", "", fmt.Errorf("pre-provisioning volume %s in %s: %w", tpv.Name, m.Target, err)
		}
	}
	if err := dst.Create(ctx, claim); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", "", fmt.Errorf("pre-provisioning claim %s in %s: %w", vol.ClaimName, m.Target, err)
	}
	return node, "", nil
}

// claimNode is the node of the claim's local volume, "" when it has none.
func claimNode(ctx context.Context, dst client.Client, c *corev1.PersistentVolumeClaim) (string, error) {
	if c.Spec.VolumeName == "" {
		return "", nil
	}
	pv := &corev1.PersistentVolume{}
	if err := dst.Get(ctx, types.NamespacedName{Name: c.Spec.VolumeName}, pv); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	if pv.Spec.Local == nil {
		return "", nil
	}
	return volumeNode(pv), nil
}

func mergeMaps(a, b map[string]string) map[string]string {
	if a == nil {
		a = map[string]string{}
	}
	for k, v := range b {
		a[k] = v
	}
	return a
}

// TargetNode returns the node of the target cluster that receives the
// volumes and runs the restored pods: the one an existing Target
// VolumeReplication of the migration names, else the first Ready,
// schedulable, untainted node by name.
func TargetNode(ctx context.Context, dst client.Client, m migration.Migration) (string, error) {
	if n, err := replicationNode(ctx, dst, m); err != nil || n != "" {
		return n, err
	}
	var nodes corev1.NodeList
	if err := dst.List(ctx, &nodes); err != nil {
		return "", fmt.Errorf("listing nodes of %s: %w", m.Target, err)
	}
	sort.Slice(nodes.Items, func(i, j int) bool { return nodes.Items[i].Name < nodes.Items[j].Name })
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable || !nodeReady(&n) || hasNoScheduleTaint(&n) {
			continue
		}
		return n.Name, nil
	}
	return "", migration.NewStepFailedError(lmv1alpha1.ReasonNoTargetNode, fmt.Sprintf("cluster %s has no Ready schedulable node to receive the volumes", m.Target))
}

// replicationNode is the node an existing Target VolumeReplication of the
// migration names, "" when there is none.
func replicationNode(ctx context.Context, dst client.Client, m migration.Migration) (string, error) {
	var vrs agentv1alpha1.VolumeReplicationList
	if err := dst.List(ctx, &vrs, client.InNamespace(m.Namespace), client.MatchingLabels{LabelMigrationUID: string(m.UID)}); err != nil {
		return "", err
	}
	for _, vr := range vrs.Items {
		if vr.Spec.Role == agentv1alpha1.ReplicationRoleTarget {
			return vr.Spec.NodeName, nil
		}
	}
	return "", nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasNoScheduleTaint(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return true
		}
	}
	return false
}

func (r *Replication) clients(ctx context.Context, m migration.Migration) (client.Client, client.Client, error) {
	src, err := r.Clients.Get(ctx, m.Source)
	if err != nil {
		return nil, nil, err
	}
	dst, err := r.Clients.Get(ctx, m.Target)
	if err != nil {
		return nil, nil, err
	}
	return src, dst, nil
}

// PreCopy sets up both sides and reports the source's pre-copy progress.
func (r *Replication) PreCopy(ctx context.Context, m migration.Migration, vol migration.Volume, opts migration.PreCopyOptions) (migration.ReplicationState, error) {
	src, dst, err := r.clients(ctx, m)
	if err != nil {
		return migration.ReplicationState{}, err
	}
	if err := r.ensureSecrets(ctx, src, dst, m); err != nil {
		return migration.ReplicationState{}, err
	}
	node, note, err := r.prepareTarget(ctx, src, dst, m, vol)
	if err != nil || note != "" {
		return migration.ReplicationState{Message: note}, err
	}
	pre := agentv1alpha1.ReplicationPreCopy{MaxRounds: opts.MaxRounds}
	if opts.ConvergenceThresholdBytes > 0 {
		pre.ConvergenceThreshold = resource.NewQuantity(opts.ConvergenceThresholdBytes, resource.BinarySI)
	}
	var bw *resource.Quantity
	if m.BandwidthLimit > 0 {
		bw = resource.NewQuantity(m.BandwidthLimit, resource.BinarySI)
	}
	tkey := r.key(m, vol, "target")
	tgt := &agentv1alpha1.VolumeReplication{}
	if err := dst.Get(ctx, tkey, tgt); apierrors.IsNotFound(err) {
		tgt = &agentv1alpha1.VolumeReplication{ObjectMeta: objectMeta(m, tkey), Spec: agentv1alpha1.VolumeReplicationSpec{
			MigrationUID: string(m.UID), Role: agentv1alpha1.ReplicationRoleTarget, NodeName: node, ClaimName: vol.ClaimName,
			TLSSecretRef: corev1.SecretReference{Name: tlsSecretName(m), Namespace: r.agentNamespace(m.Target)}, BandwidthLimit: bw, PreCopy: pre,
			Stage: agentv1alpha1.ReplicationStagePreCopy,
		}}
		if err := dst.Create(ctx, tgt); err != nil && !apierrors.IsAlreadyExists(err) {
			return migration.ReplicationState{}, fmt.Errorf("creating VolumeReplication %s in %s: %w", tkey, m.Target, err)
		}
		return migration.ReplicationState{Message: "waiting for the target receiver"}, nil
	} else if err != nil {
		return migration.ReplicationState{}, err
	}
	if err := failed(tgt); err != nil {
		return migration.ReplicationState{}, err
	}
	if tgt.Status.Endpoint == "" {
		return migration.ReplicationState{Message: "waiting for the target receiver"}, nil
	}
	skey := r.key(m, vol, "source")
	sv := &agentv1alpha1.VolumeReplication{}
	if err := src.Get(ctx, skey, sv); apierrors.IsNotFound(err) {
		if vol.Node == "" {
			return migration.ReplicationState{}, migration.NewStepFailedError(lmv1alpha1.ReasonNoSourceNode, fmt.Sprintf("no running pod mounts claim %s", vol.ClaimName))
		}
		sv = &agentv1alpha1.VolumeReplication{ObjectMeta: objectMeta(m, skey), Spec: agentv1alpha1.VolumeReplicationSpec{
			MigrationUID: string(m.UID), Role: agentv1alpha1.ReplicationRoleSource, NodeName: vol.Node, ClaimName: vol.ClaimName,
			PodName: vol.Pod, PeerAddress: tgt.Status.Endpoint, PeerServerName: tgt.Status.ServerName, TLSSecretRef: corev1.SecretReference{Name: tlsSecretName(m), Namespace: r.agentNamespace(m.Source)},
			BandwidthLimit: bw, PreCopy: pre, Stage: agentv1alpha1.ReplicationStagePreCopy,
		}}
		if err := src.Create(ctx, sv); err != nil && !apierrors.IsAlreadyExists(err) {
			return migration.ReplicationState{}, fmt.Errorf("creating VolumeReplication %s in %s: %w", skey, m.Source, err)
		}
		return migration.ReplicationState{Message: "pre-copy requested"}, nil
	} else if err != nil {
		return migration.ReplicationState{}, err
	}
	return stateOf(sv)
}

func failed(vr *agentv1alpha1.VolumeReplication) error {
	if vr.Status.Phase == agentv1alpha1.VolumeReplicationFailed {
		// A cause the user can act on keeps its own reason; the set of
		// reasons stays the controller's (the agent's is only matched).
		reason := "ReplicationFailed"
		if c := meta.FindStatusCondition(vr.Status.Conditions, agentv1alpha1.ConditionFailed); c != nil && c.Reason == agentv1alpha1.ReasonTargetVolumeTooSmall {
			reason = agentv1alpha1.ReasonTargetVolumeTooSmall
		}
		return migration.NewStepFailedError(reason, fmt.Sprintf("replication of claim %s (%s) failed: %s", vr.Spec.ClaimName, vr.Spec.Role, vr.Status.Message))
	}
	if vr.Status.Phase == agentv1alpha1.VolumeReplicationAborted && !vr.Spec.Abort {
		return migration.NewStepFailedError("ReplicationAborted", fmt.Sprintf("replication of claim %s (%s) was aborted by the agent: %s", vr.Spec.ClaimName, vr.Spec.Role, vr.Status.Message))
	}
	return nil
}

func stateOf(sv *agentv1alpha1.VolumeReplication) (migration.ReplicationState, error) {
	if err := failed(sv); err != nil {
		return migration.ReplicationState{}, err
	}
	st := sv.Status
	rs := migration.ReplicationState{
		Rounds: st.Round, LastDeltaBytes: st.LastDeltaBytes, PreCopyBytes: st.BytesSent,
		BytesPerSecond: st.RateBytesPerSecond, PendingBytes: st.LastDeltaBytes, Message: st.Message,
	}
	switch st.Phase {
	case agentv1alpha1.VolumeReplicationPreCopied, agentv1alpha1.VolumeReplicationFinalSyncing,
		agentv1alpha1.VolumeReplicationVerifying, agentv1alpha1.VolumeReplicationCompleted:
		rs.PreCopyDone = true
	}
	if st.Phase == agentv1alpha1.VolumeReplicationCompleted {
		if st.Checksum == agentv1alpha1.ChecksumMismatch {
			return rs, migration.NewStepFailedError(lmv1alpha1.ReasonChecksumMismatch, fmt.Sprintf("claim %s differs on the target after the final sync", sv.Spec.ClaimName))
		}
		// Synced only once verified: an unverified copy must not be restored from.
		rs.Synced = st.Checksum == agentv1alpha1.ChecksumMatch ||
			meta.IsStatusConditionTrue(st.Conditions, agentv1alpha1.ConditionVerified)
		rs.FinalDeltaBytes = st.LastDeltaBytes
		rs.PendingBytes = 0
	}
	return rs, nil
}

// setFinal moves one side to the final stage (idempotent).
func setFinal(ctx context.Context, cl client.Client, key types.NamespacedName) (*agentv1alpha1.VolumeReplication, error) {
	vr := &agentv1alpha1.VolumeReplication{}
	if err := cl.Get(ctx, key, vr); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, migration.NewStepFailedError(lmv1alpha1.ReasonReplicationGone, fmt.Sprintf("VolumeReplication %s disappeared before the final sync", key))
		}
		return nil, err
	}
	if vr.Spec.Stage != agentv1alpha1.ReplicationStageFinal {
		orig := vr.DeepCopy()
		vr.Spec.Stage = agentv1alpha1.ReplicationStageFinal
		if err := cl.Patch(ctx, vr, client.MergeFrom(orig)); err != nil {
			return nil, fmt.Errorf("requesting the final sync of %s: %w", key, err)
		}
	}
	return vr, nil
}

// FinalSync asks for the last delta (the workload is frozen) and reports it.
func (r *Replication) FinalSync(ctx context.Context, m migration.Migration, vol migration.Volume) (migration.ReplicationState, error) {
	src, dst, err := r.clients(ctx, m)
	if err != nil {
		return migration.ReplicationState{}, err
	}
	if _, err := setFinal(ctx, dst, r.key(m, vol, "target")); err != nil {
		return migration.ReplicationState{}, err
	}
	sv, err := setFinal(ctx, src, r.key(m, vol, "source"))
	if err != nil {
		return migration.ReplicationState{}, err
	}
	return stateOf(sv)
}

// Progress reports the source's state.
func (r *Replication) Progress(ctx context.Context, m migration.Migration, vol migration.Volume) (migration.ReplicationState, error) {
	src, err := r.Clients.Get(ctx, m.Source)
	if err != nil {
		return migration.ReplicationState{}, err
	}
	sv := &agentv1alpha1.VolumeReplication{}
	if err := src.Get(ctx, r.key(m, vol, "source"), sv); err != nil {
		return migration.ReplicationState{}, client.IgnoreNotFound(err)
	}
	return stateOf(sv)
}

// deleteAll deletes the objects; done once every one is gone.
func deleteAll(ctx context.Context, cl client.Client, objs ...client.Object) (bool, error) {
	gone := true
	for _, o := range objs {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return false, err
		}
		gone = false
		if o.GetDeletionTimestamp().IsZero() {
			if err := cl.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				return false, err
			}
		}
	}
	return gone, nil
}

func (r *Replication) objects(m migration.Migration, vol migration.Volume, role string) []client.Object {
	vr := &agentv1alpha1.VolumeReplication{}
	k := r.key(m, vol, role)
	vr.Namespace, vr.Name = k.Namespace, k.Name
	return []client.Object{vr}
}

// deleteSide deletes one side's VolumeReplication, the other objects
// given, and the credentials in that cluster; done once all are gone.
func (r *Replication) deleteSide(ctx context.Context, cl client.Client, m migration.Migration, cluster string, objs ...client.Object) (bool, error) {
	gone, err := deleteAll(ctx, cl, objs...)
	if err != nil {
		return false, err
	}
	sgone, err := r.deleteSecret(ctx, cl, m, cluster)
	if err != nil {
		return false, err
	}
	return gone && sgone, nil
}

// Abort stops both sides (the agent removes the target's partial data),
// then deletes them, the credentials and the claim pre-provisioned in the
// target cluster. With opts.Force it deletes them without waiting for the
// agents to report the abort (and without asking a second time).
func (r *Replication) Abort(ctx context.Context, m migration.Migration, vol migration.Volume, opts migration.AbortOptions) (bool, error) {
	src, dst, err := r.clients(ctx, m)
	if err != nil {
		return false, err
	}
	for _, side := range []struct {
		cl   client.Client
		role string
	}{{src, "source"}, {dst, "target"}} {
		vr := &agentv1alpha1.VolumeReplication{}
		err := side.cl.Get(ctx, r.key(m, vol, side.role), vr)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		if opts.Force {
			continue
		}
		if !vr.Spec.Abort {
			orig := vr.DeepCopy()
			vr.Spec.Abort = true
			if err := side.cl.Patch(ctx, vr, client.MergeFrom(orig)); err != nil {
				return false, fmt.Errorf("aborting VolumeReplication %s/%s: %w", vr.Namespace, vr.Name, err)
			}
			return false, nil
		}
		switch vr.Status.Phase {
		case agentv1alpha1.VolumeReplicationAborted, agentv1alpha1.VolumeReplicationFailed, agentv1alpha1.VolumeReplicationCompleted, "":
		default:
			return false, nil // the agent is still stopping
		}
	}
	srcGone, err := r.deleteSide(ctx, src, m, m.Source, r.objects(m, vol, "source")...)
	if err != nil {
		return false, err
	}
	pvc := &corev1.PersistentVolumeClaim{}
	pvc.Namespace, pvc.Name = m.Namespace, vol.ClaimName
	dstObjs := r.objects(m, vol, "target")
	if err := dst.Get(ctx, client.ObjectKeyFromObject(pvc), pvc); err == nil && pvc.Labels[LabelMigrationUID] == string(m.UID) {
		dstObjs = append(dstObjs, pvc) // only the claim this migration created
	}
	pvNames := []string{provision.TargetVolumeName(string(m.UID), m.Namespace, vol.ClaimName)}
	if pvc.Labels[LabelMigrationUID] == string(m.UID) && pvc.Spec.VolumeName != "" && pvc.Spec.VolumeName != pvNames[0] {
		pvNames = append(pvNames, pvc.Spec.VolumeName) // a retained claim's volume it adopted
	}
	for _, name := range pvNames {
		pv := &corev1.PersistentVolume{}
		pv.Name = name
		if err := dst.Get(ctx, client.ObjectKeyFromObject(pv), pv); err == nil && pv.Labels[LabelMigrationUID] == string(m.UID) {
			dstObjs = append(dstObjs, pv) // and the local volume it created or adopted for it
		}
	}
	dstGone, err := r.deleteSide(ctx, dst, m, m.Target, dstObjs...)
	if err != nil {
		return false, err
	}
	return srcGone && dstGone, nil
}

// Complete deletes both sides and the credentials; the target claim stays
// (the workload uses it).
func (r *Replication) Complete(ctx context.Context, m migration.Migration, vol migration.Volume) (bool, error) {
	src, dst, err := r.clients(ctx, m)
	if err != nil {
		return false, err
	}
	a, err := r.deleteSide(ctx, src, m, m.Source, r.objects(m, vol, "source")...)
	if err != nil {
		return false, err
	}
	b, err := r.deleteSide(ctx, dst, m, m.Target, r.objects(m, vol, "target")...)
	if err != nil {
		return false, err
	}
	return a && b, nil
}
