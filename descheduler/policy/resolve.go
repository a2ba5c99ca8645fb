package policy

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// Level is where a policy value can be set, by precedence.
type Level string

const (
	LevelTemplate                 Level = "ResourceTemplate"
	LevelPropagationPolicy        Level = "PropagationPolicy"
	LevelClusterPropagationPolicy Level = "ClusterPropagationPolicy"
	// LevelDefault is a value nobody set.
	LevelDefault Level = "Default"
)

// Source is the object a value came from.
type Source struct {
	Level Level `json:"level"`
	// Kind of the object (Deployment, StatefulSet, PropagationPolicy, ...).
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
}

func (s Source) String() string {
	switch {
	case s.Level == LevelDefault:
		return "default"
	case s.Namespace != "":
		return fmt.Sprintf("%s %s/%s", s.Kind, s.Namespace, s.Name)
	default:
		return fmt.Sprintf("%s %s", s.Kind, s.Name)
	}
}

// Layer is the annotations of one object the policy is resolved from.
type Layer struct {
	Source      Source
	Annotations map[string]string
}

// Policy is the effective policy of one workload.
type Policy struct {
	// Strategy is empty when no layer sets livemigrate.io/eviction-strategy.
	Strategy Strategy `json:"strategy,omitempty"`
	// DowntimeBudget is nil when no layer sets it (the descheduler's
	// --default-downtime-budget applies).
	DowntimeBudget *time.Duration `json:"downtimeBudget,omitempty"`
	Rebalance      bool           `json:"rebalance"`
	DrainPriority  int32          `json:"drainPriority"`
	// MemoryTransfer is empty when no layer sets it (StopAndCopy).
	MemoryTransfer lmv1alpha1.MemoryTransfer `json:"memoryTransfer,omitempty"`
	// From says, per annotation, where the effective value came from.
	From map[string]Source `json:"from"`
	// Invalid lists malformed values in any layer. A policy with one is not
	// opted in, whatever the other values say.
	Invalid []InvalidValue `json:"invalid,omitempty"`
}

// InvalidValue is a malformed annotation found while resolving.
type InvalidValue struct {
	Source  Source `json:"source"`
	Message string `json:"message"`
}

func (v InvalidValue) String() string { return v.Source.String() + ": " + v.Message }

// OptedIn reports whether a trigger may move the workload: its strategy is
// LiveMigrate or LiveMigrateIfPossible and no value is malformed.
func (p *Policy) OptedIn() bool {
	return len(p.Invalid) == 0 && (p.Strategy == StrategyLiveMigrate || p.Strategy == StrategyLiveMigrateIfPossible)
}

// MayFallBack reports whether Karmada's graceful eviction may replace a live
// migration that cannot start or rolled back.
func (p *Policy) MayFallBack() bool {
	return p.OptedIn() && p.Strategy == StrategyLiveMigrateIfPossible
}

// InvalidMessage joins the malformed values, for events and status.
func (p *Policy) InvalidMessage() string {
	parts := make([]string, 0, len(p.Invalid))
	for _, v := range p.Invalid {
		parts = append(parts, v.String())
	}
	return strings.Join(parts, "; ")
}

// Resolve computes the effective policy from layers given by precedence,
// highest first (template, PropagationPolicy, ClusterPropagationPolicy):
// for each annotation the first layer that sets it wins. Malformed values
// are collected from every layer, including those a higher layer overrides,
// and make the workload not opted in.
func Resolve(layers ...Layer) *Policy {
	p := &Policy{Rebalance: true, From: map[string]Source{}}
	for _, k := range Keys {
		p.From[k] = Source{Level: LevelDefault}
	}
	set := map[string]bool{}
	for _, l := range layers {
		for _, err := range Validate(l.Annotations) {
			p.Invalid = append(p.Invalid, InvalidValue{Source: l.Source, Message: err.Error()})
		}
		for _, k := range Keys {
			v, ok := l.Annotations[k]
			if !ok || set[k] || validateOne(k, v) != nil {
				continue
			}
			set[k] = true
			p.From[k] = l.Source
			switch k {
			case AnnotationEvictionStrategy:
				p.Strategy, _ = parseStrategy(v)
			case AnnotationDowntimeBudget:
				d, _ := parseBudget(v)
				p.DowntimeBudget = &d
			case AnnotationRebalance:
				p.Rebalance, _ = parseBool(v)
			case AnnotationDrainPriority:
				p.DrainPriority, _ = parsePriority(v)
			case AnnotationMemoryTransfer:
				p.MemoryTransfer, _ = parseMemoryTransfer(v)
			}
		}
	}
	return p
}

// ApplyTo sets what the policy says of a LiveMigration's spec: the
// downtime budget and the memory transfer. What no layer sets is left
// empty (the controller's defaults apply).
func (p *Policy) ApplyTo(spec *lmv1alpha1.LiveMigrationSpec) {
	if p == nil {
		return
	}
	if p.DowntimeBudget != nil {
		spec.DowntimeBudget = &metav1.Duration{Duration: *p.DowntimeBudget}
	}
	spec.MemoryTransfer = p.MemoryTransfer
}
