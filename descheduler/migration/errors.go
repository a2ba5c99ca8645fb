package migration

import (
	"errors"
	"fmt"
	"time"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/internal/features"
)

// ReasonInvalidSpec is the failure reason, the Admitted condition's reason
// and the event reason of a migration whose spec the controller cannot act
// on.
const ReasonInvalidSpec = lmv1alpha1.ReasonInvalidSpec

// MsgPostCopyGate is what is wrong with spec.memoryTransfer PostCopy while
// the PostCopyMigration feature gate is off: the webhook's denial and the
// controller's InvalidSpec failure.
var MsgPostCopyGate = "PostCopy needs the feature gate " + string(features.PostCopyMigration) +
	", which is off: start the descheduler and the agents with " + features.FlagHint(features.PostCopyMigration) +
	", or use StopAndCopy"

// MsgPostCopyNotRun is what is wrong with spec.memoryTransfer PostCopy when
// the gate is on: this controller has no post-copy phase, and it never runs
// a PostCopy migration as a stop-and-copy one.
const MsgPostCopyNotRun = "this version of the migration controller does not run post-copy migrations: use StopAndCopy"

// StepFailedError is a failure that retrying does not fix: the migration rolls back.
type StepFailedError struct {
	Reason  string
	Message string
}

func (e *StepFailedError) Error() string { return e.Message }

// NewStepFailedError returns a StepFailedError with a CamelCase reason.
func NewStepFailedError(reason, message string) error {
	return &StepFailedError{Reason: reason, Message: message}
}

// IsStepFailed reports whether err is or wraps a StepFailedError.
func IsStepFailed(err error) bool {
	var e *StepFailedError
	return errors.As(err, &e)
}

// BudgetExceededError says the estimated downtime does not fit the budget.
type BudgetExceededError struct {
	Estimated time.Duration
	Budget    time.Duration
}

func (e *BudgetExceededError) Error() string {
	return fmt.Sprintf("estimated downtime %s exceeds the downtime budget %s; raise spec.downtimeBudget or spec.bandwidthLimit, or migrate when the workload writes less", e.Estimated.Round(time.Millisecond), e.Budget)
}

// NewBudgetExceededError returns a BudgetExceededError.
func NewBudgetExceededError(estimated, budget time.Duration) error {
	return &BudgetExceededError{Estimated: estimated, Budget: budget}
}

// IsBudgetExceeded reports whether err is or wraps a BudgetExceededError.
func IsBudgetExceeded(err error) bool {
	var e *BudgetExceededError
	return errors.As(err, &e)
}

// PhaseTimeoutError says a phase ran longer than its timeout.
type PhaseTimeoutError struct {
	Phase   string
	Timeout time.Duration
}

func (e *PhaseTimeoutError) Error() string {
	return fmt.Sprintf("phase %s did not finish within %s", e.Phase, e.Timeout)
}

// NewPhaseTimeoutError returns a PhaseTimeoutError.
func NewPhaseTimeoutError(phase string, timeout time.Duration) error {
	return &PhaseTimeoutError{Phase: phase, Timeout: timeout}
}

// IsPhaseTimeout reports whether err is or wraps a PhaseTimeoutError.
func IsPhaseTimeout(err error) bool {
	var e *PhaseTimeoutError
	return errors.As(err, &e)
}

// failureReason maps an error to the CamelCase reason recorded in status.
func failureReason(err error) string {
	var sf *StepFailedError
	switch {
	case errors.As(err, &sf):
		return sf.Reason
	case IsBudgetExceeded(err):
		return lmv1alpha1.ReasonBudgetExceeded
	case IsPhaseTimeout(err):
		return lmv1alpha1.ReasonTimeout
	default:
		return lmv1alpha1.ReasonError
	}
}
