package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Messages of the checks on a LiveMigration's spec, the same in the CRD's
// CEL rules (livemigration_types.go), the validating webhook and the
// controller.
const (
	MsgWorkloadRequired     = "the workload to migrate is required: spec.workloadRef {kind: Deployment or StatefulSet, name: ...}"
	MsgWorkloadAPIVersion   = "must be apps/v1"
	MsgWorkloadKind         = "must be Deployment or StatefulSet"
	MsgWorkloadKindRequired = "the workload's kind is required: Deployment or StatefulSet"
	MsgWorkloadName         = "must be the name of the workload (1 to 253 characters)"
	MsgWorkloadNameRequired = "the workload's name is required"
	MsgTimeout              = "must be a duration greater than zero, such as 30m or 90s, and at most 24h (omit it for the controller's default)"
	MsgDowntimeBudget       = "must be a duration greater than zero, such as 2s or 500ms, and at most 1h (omit it for the controller's --default-downtime-budget)"
	MsgBandwidthLimit       = "must be a quantity of bytes per second greater than zero, such as 200Mi (omit it for no limit)"
	MsgConvergenceThreshold = "must be a quantity of bytes greater than zero, such as 64Mi (omit it for the controller's default)"
	MsgMaxRounds            = "must be between 1 and 100 (omit it for the controller's default)"
	MsgTargetCluster        = "must be the name of a member cluster (at most 253 characters; see kubectl get clusters)"
	MsgMemoryTransfer       = "must be StopAndCopy or PostCopy (omit it for StopAndCopy)"
)

// Upper bounds of the spec's durations: a phase that needs more than a day,
// or a freeze longer than an hour, is a mistake rather than a plan.
const (
	MaxTimeout        = 24 * time.Hour
	MaxDowntimeBudget = time.Hour
)

// SupportedWorkloadKinds are the workload kinds the controller migrates.
var SupportedWorkloadKinds = map[string]bool{"Deployment": true, "StatefulSet": true}

// Validate checks a decoded spec as the CRD's CEL rules check it at
// creation: the workload is an apps/v1 Deployment or StatefulSet, every
// duration and quantity is greater than zero, a timeout at most MaxTimeout,
// the downtime budget at most MaxDowntimeBudget, maxRounds is 1 to 100 and
// memoryTransfer is StopAndCopy or PostCopy. A spec stored before those
// rules existed, or written past them, fails here.
func (s *LiveMigrationSpec) Validate(fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	ref, refPath := s.WorkloadRef, fldPath.Child("workloadRef")
	if ref == (WorkloadReference{}) {
		errs = append(errs, field.Required(refPath, MsgWorkloadRequired))
	}
	if ref.APIVersion != "" && ref.APIVersion != "apps/v1" {
		errs = append(errs, field.Invalid(refPath.Child("apiVersion"), ref.APIVersion, MsgWorkloadAPIVersion))
	}
	switch {
	case ref == (WorkloadReference{}):
	case ref.Kind == "":
		errs = append(errs, field.Required(refPath.Child("kind"), MsgWorkloadKindRequired))
	case !SupportedWorkloadKinds[ref.Kind]:
		errs = append(errs, field.Invalid(refPath.Child("kind"), ref.Kind, MsgWorkloadKind))
	}
	switch {
	case ref == (WorkloadReference{}):
	case ref.Name == "":
		errs = append(errs, field.Required(refPath.Child("name"), MsgWorkloadNameRequired))
	case len(ref.Name) > 253:
		errs = append(errs, field.Invalid(refPath.Child("name"), ref.Name, MsgWorkloadName))
	}
	if len(s.TargetCluster) > 253 {
		errs = append(errs, field.Invalid(fldPath.Child("targetCluster"), s.TargetCluster, MsgTargetCluster))
	}
	if d := s.DowntimeBudget; d != nil && (d.Duration <= 0 || d.Duration > MaxDowntimeBudget) {
		errs = append(errs, field.Invalid(fldPath.Child("downtimeBudget"), d.Duration.String(), MsgDowntimeBudget))
	}
	if q := s.BandwidthLimit; q != nil && q.Sign() <= 0 {
		errs = append(errs, field.Invalid(fldPath.Child("bandwidthLimit"), q.String(), MsgBandwidthLimit))
	}
	if pc := s.PreCopy; pc != nil {
		p := fldPath.Child("preCopy")
		if q := pc.ConvergenceThreshold; q != nil && q.Sign() <= 0 {
			errs = append(errs, field.Invalid(p.Child("convergenceThreshold"), q.String(), MsgConvergenceThreshold))
		}
		if n := pc.MaxRounds; n != nil && (*n < 1 || *n > 100) {
			errs = append(errs, field.Invalid(p.Child("maxRounds"), *n, MsgMaxRounds))
		}
	}
	switch s.MemoryTransfer {
	case "", MemoryTransferStopAndCopy, MemoryTransferPostCopy:
	default:
		errs = append(errs, field.Invalid(fldPath.Child("memoryTransfer"), s.MemoryTransfer, MsgMemoryTransfer))
	}
	if t := s.Timeouts; t != nil {
		p := fldPath.Child("timeouts")
		for _, f := range []struct {
			name string
			d    *metav1.Duration
		}{
			{"planning", t.Planning}, {"preCopy", t.PreCopy}, {"checkpointing", t.Checkpointing},
			{"finalSync", t.FinalSync}, {"transfer", t.Transfer}, {"rebinding", t.Rebinding},
			{"restoring", t.Restoring}, {"verifying", t.Verifying},
		} {
			if f.d != nil && (f.d.Duration <= 0 || f.d.Duration > MaxTimeout) {
				errs = append(errs, field.Invalid(p.Child(f.name), f.d.Duration.String(), MsgTimeout))
			}
		}
	}
	return errs
}

// PostCopy reports whether the spec asks for the post-copy memory transfer;
// an empty memoryTransfer is StopAndCopy.
func (s *LiveMigrationSpec) PostCopy() bool {
	return s.MemoryTransfer == MemoryTransferPostCopy
}
