package report

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Annotations of the report Lease.
const (
	// AnnotationKernel is the node's kernel release (uname -r).
	AnnotationKernel = "agent.livemigrate.io/kernel"
	// AnnotationArchitecture is the agent's GOARCH, the node's architecture.
	AnnotationArchitecture = "agent.livemigrate.io/architecture"
	// AnnotationRuntime is the Node's status.nodeInfo.containerRuntimeVersion.
	AnnotationRuntime = "agent.livemigrate.io/runtime"
	// AnnotationFreezer is the cgroup freezer the agent uses (v1 or v2).
	AnnotationFreezer = "agent.livemigrate.io/freezer"
	// AnnotationCheckpointAPI is what the kubelet's checkpoint API answered
	// a checkpoint of a pod that does not exist: CheckpointAPIOK, or what
	// is wrong.
	AnnotationCheckpointAPI = "agent.livemigrate.io/checkpoint-api"
	// CheckpointAPIOK means the kubelet's checkpoint API answered, and
	// authorized the agent.
	CheckpointAPIOK = "ok"
	// AnnotationCRIUVersion is the node's CRIU version (criu --version).
	AnnotationCRIUVersion = "agent.livemigrate.io/criu-version"
	// AnnotationCRIUCheck is what criu check said: CRIUCheckOK, or its
	// error.
	AnnotationCRIUCheck = "agent.livemigrate.io/criu-check"
	// CRIUCheckOK means criu check passed.
	CRIUCheckOK = "ok"
	// AnnotationRegistries is what each registry of the agent's
	// --probe-registries answered GET /v2/ from the node: a JSON object of
	// host[:port] → RegistryOK, or what is wrong.
	AnnotationRegistries = "agent.livemigrate.io/registries"
	// RegistryOK means the registry answered as a registry (200 or 401).
	RegistryOK = "ok"
	// LabelComponent marks report Leases.
	LabelComponent = "app.kubernetes.io/component"
	// ComponentValue is LabelComponent's value on report Leases.
	ComponentValue = "node-report"
)

// LeaseName is the report Lease of a node.
func LeaseName(node string) string { return "livemigrate-agent-" + node }

// Reporter renews the node's report Lease. It runs on every agent (no
// leader election).
type Reporter struct {
	Client    client.Client
	Reader    client.Reader
	Clock     clock.Clock
	Node      string
	Namespace string
	Interval  time.Duration
	// Freezer is the cgroup version the agent's freezer uses.
	Freezer string
	// KernelRelease returns the kernel release; reads /proc/sys/kernel/osrelease when nil.
	KernelRelease func() (string, error)
	// CheckpointAPI probes the node's kubelet checkpoint API and returns
	// CheckpointAPIOK or what is wrong (ProbeCheckpointAPI); nil leaves the
	// annotation out.
	CheckpointAPI func(ctx context.Context, node *corev1.Node) string
	// CRIU returns the node's CRIU version and what criu check said
	// (ProbeCRIU); nil, or an empty check (not known yet), leaves both
	// annotations out.
	CRIU func(ctx context.Context) (version, check string)
	// Registries probes the checkpoint registries from the node and returns
	// host → RegistryOK or what is wrong (ProbeRegistries); nil leaves the
	// annotation out.
	Registries func(ctx context.Context) map[string]string
}

// NeedLeaderElection is false: every agent reports its own node.
func (r *Reporter) NeedLeaderElection() bool { return false }

// Start renews the report until ctx ends; a failed renewal is logged and
// retried at the next interval.
func (r *Reporter) Start(ctx context.Context) error {
	log := klog.FromContext(ctx).WithValues("node", r.Node, "lease", klog.KRef(r.Namespace, LeaseName(r.Node)))
	for {
		if err := r.Renew(ctx); err != nil {
			log.Error(err, "Renewing the node report failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.Clock.After(r.Interval):
		}
	}
}

// Renew writes the report once.
func (r *Reporter) Renew(ctx context.Context) error {
	ann, err := r.annotations(ctx)
	if err != nil {
		return err
	}
	now := metav1.NewMicroTime(r.Clock.Now())
	key := types.NamespacedName{Namespace: r.Namespace, Name: LeaseName(r.Node)}
	lease := &coordinationv1.Lease{}
	err = r.Reader.Get(ctx, key, lease)
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: map[string]string{LabelComponent: ComponentValue}, Annotations: ann},
			Spec:       r.spec(now),
		}
		if err := r.Client.Create(ctx, lease); err != nil {
			return fmt.Errorf("creating the report Lease %s: %w", key, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the report Lease %s: %w", key, err)
	}
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	for k, v := range ann {
		lease.Annotations[k] = v
	}
	if lease.Labels == nil {
		lease.Labels = map[string]string{}
	}
	lease.Labels[LabelComponent] = ComponentValue
	acquire := lease.Spec.AcquireTime
	lease.Spec = r.spec(now)
	if acquire != nil {
		lease.Spec.AcquireTime = acquire
	}
	if err := r.Client.Update(ctx, lease); err != nil {
		return fmt.Errorf("renewing the report Lease %s: %w", key, err)
	}
	return nil
}

func (r *Reporter) spec(now metav1.MicroTime) coordinationv1.LeaseSpec {
	return coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(r.Node),
		LeaseDurationSeconds: ptr.To(int32((3 * r.Interval).Round(time.Second) / time.Second)),
		AcquireTime:          &now,
		RenewTime:            &now,
	}
}

func (r *Reporter) annotations(ctx context.Context) (map[string]string, error) {
	kernel := r.KernelRelease
	if kernel == nil {
		kernel = func() (string, error) {
			b, err := os.ReadFile("/proc/sys/kernel/osrelease")
			return strings.TrimSpace(string(b)), err
		}
	}
	rel, err := kernel()
	if err != nil {
		return nil, fmt.Errorf("reading the kernel release: %w", err)
	}
	node := &corev1.Node{}
	if err := r.Reader.Get(ctx, types.NamespacedName{Name: r.Node}, node); err != nil {
		return nil, fmt.Errorf("reading Node %s: %w", r.Node, err)
	}
	ann := map[string]string{
		AnnotationKernel:       rel,
		AnnotationArchitecture: goruntime.GOARCH,
		AnnotationRuntime:      node.Status.NodeInfo.ContainerRuntimeVersion,
		AnnotationFreezer:      r.Freezer,
	}
	if r.CheckpointAPI != nil {
		ann[AnnotationCheckpointAPI] = r.CheckpointAPI(ctx, node)
	}
	if r.CRIU != nil {
		// Left out until the first check finished.
		if v, check := r.CRIU(ctx); check != "" {
			ann[AnnotationCRIUVersion], ann[AnnotationCRIUCheck] = v, check
		}
	}
	if r.Registries != nil {
		b, err := json.Marshal(r.Registries(ctx))
		if err != nil {
			return nil, fmt.Errorf("encoding the registry probes: %w", err)
		}
		ann[AnnotationRegistries] = string(b)
	}
	return ann, nil
}
