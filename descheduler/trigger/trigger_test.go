package trigger

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/policy"
	"github.com/livemigrate/livemigrate/test/builder"
)

func TestNewLiveMigration(t *testing.T) {
	long := strings.Repeat("a", 39) + "-bcdef"
	rb := builder.MakeBinding("ns", long).Resource("apps/v1", "StatefulSet").Request("memory", "1Gi").Replicas(3).Obj()
	budget := 2 * time.Second
	pol := policy.Resolve(policy.Layer{Annotations: map[string]string{
		policy.AnnotationDowntimeBudget: "2s", policy.AnnotationMemoryTransfer: "PostCopy"}})
	lm := NewLiveMigration(rb, "member2", policy.TriggerRebalance, "rebalance", map[string]string{"x": "y"}, "why", pol)
	if want := strings.Repeat("a", 39) + "-rebalance-"; lm.GenerateName != want {
		t.Errorf("generateName %q, want %q (cut at 40 bytes, no trailing dash)", lm.GenerateName, want)
	}
	if msgs := validation.IsDNS1123Subdomain(lm.GenerateName + "x7k2q"); len(msgs) > 0 {
		t.Errorf("generated name is not valid: %v", msgs)
	}
	if lm.Labels[policy.LabelTrigger] != "rebalance" || lm.Labels["x"] != "y" || lm.Annotations[policy.AnnotationReason] != "why" {
		t.Errorf("labels %v annotations %v", lm.Labels, lm.Annotations)
	}
	if lm.Spec.WorkloadRef.Kind != "StatefulSet" || lm.Spec.WorkloadRef.Name != long || lm.Spec.TargetCluster != "member2" ||
		lm.Spec.DowntimeBudget.Duration != budget || lm.Spec.MemoryTransfer != lmv1alpha1.MemoryTransferPostCopy {
		t.Errorf("spec %+v", lm.Spec)
	}
	if s := NewLiveMigration(rb, "b", policy.TriggerMaintenance, "drain", nil, "", nil).Spec; s.DowntimeBudget != nil || s.MemoryTransfer != "" {
		t.Errorf("no policy must leave the controller's defaults: spec %+v", s)
	}
	if s := NewLiveMigration(rb, "b", policy.TriggerMaintenance, "drain", nil, "", policy.Resolve()).Spec; s.DowntimeBudget != nil || s.MemoryTransfer != "" {
		t.Errorf("a policy without values must leave the controller's defaults: spec %+v", s)
	}
	if got := CheckpointBytes(rb, 1); got != 3<<30 {
		t.Errorf("checkpoint bytes %d, want 3Gi", got)
	}
	rb.Spec.ReplicaRequirements = nil
	if got := CheckpointBytes(rb, 256<<20); got != 3*256<<20 {
		t.Errorf("checkpoint bytes without a request %d", got)
	}
}
