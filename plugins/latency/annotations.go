package latency

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

const (
	// AnnotationNear lists what the workload must be close to:
	// comma-separated "cluster:NAME" or "origin:NAME" items, each optionally
	// weighted with "=W" (an integer 1–100, default 1), e.g.
	// "cluster:member2,origin:eu-users=3".
	AnnotationNear = "latency.livemigrate.io/near"
	// AnnotationMaxRTT is the largest RTT (a Go duration such as "40ms")
	// allowed between a candidate cluster and every target in near.
	AnnotationMaxRTT = "latency.livemigrate.io/max-rtt"

	// ReasonInvalidAnnotation is the reason of the Event emitted on a
	// template whose latency annotations cannot be used.
	ReasonInvalidAnnotation = "InvalidLatencyAnnotation"

	maxWeight  = 100
	maxTargets = 32
	maxMaxRTT  = time.Minute
)

// TargetKind says whether a target is a peer cluster or a named origin.
type TargetKind uint8

const (
	// TargetCluster is a member cluster ("cluster:NAME").
	TargetCluster TargetKind = iota
	// TargetOrigin is a named origin measured by the probers ("origin:NAME").
	TargetOrigin
)

func (k TargetKind) String() string {
	if k == TargetCluster {
		return "cluster"
	}
	return "origin"
}

// Target is one item of the near annotation.
type Target struct {
	Kind   TargetKind
	Name   string
	Weight int64
}

// Requirement is what a workload asks of latency: the parsed annotations.
type Requirement struct {
	Targets []Target
	// MaxRTT is 0 when unset.
	MaxRTT time.Duration
}

// ParseNear parses the value of AnnotationNear.
func ParseNear(v string) ([]Target, error) {
	var out []Target
	seen := map[string]bool{}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		t := Target{Weight: 1}
		ref := item
		if i := strings.IndexByte(item, '='); i >= 0 {
			w, err := strconv.ParseInt(strings.TrimSpace(item[i+1:]), 10, 64)
			if err != nil || w < 1 || w > maxWeight {
				return nil, fmt.Errorf("%q: weight must be an integer from 1 to %d", item, maxWeight)
			}
			t.Weight, ref = w, strings.TrimSpace(item[:i])
		}
		kind, name, ok := strings.Cut(ref, ":")
		kind, name = strings.TrimSpace(kind), strings.TrimSpace(name)
		switch {
		case !ok || name == "":
			return nil, fmt.Errorf("%q: want cluster:NAME or origin:NAME", item)
		case kind == "cluster":
			t.Kind = TargetCluster
		case kind == "origin":
			t.Kind = TargetOrigin
		default:
			return nil, fmt.Errorf("%q: unknown kind %q, want cluster or origin", item, kind)
		}
		t.Name = name
		// Compared once trimmed: "cluster:a" and "cluster: a" are one target.
		key := kind + ":" + name
		if seen[key] {
			return nil, fmt.Errorf("%q is listed twice: list each target once, with its weight", key)
		}
		seen[key] = true
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no targets: want e.g. %q", "cluster:member2,origin:eu-users=3")
	}
	if len(out) > maxTargets {
		return nil, fmt.Errorf("%d targets, at most %d allowed", len(out), maxTargets)
	}
	return out, nil
}

// ParseMaxRTT parses the value of AnnotationMaxRTT.
func ParseMaxRTT(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: want e.g. \"40ms\"", v)
	}
	if d <= 0 || d > maxMaxRTT {
		return 0, fmt.Errorf("%q must be positive and at most %s", v, maxMaxRTT)
	}
	return d, nil
}

// ParseRequirement parses both annotation values (empty = absent). It
// returns a nil requirement when near is absent, and an error that says what
// is wrong and how to fix it when a value is invalid.
func ParseRequirement(near, maxRTT string) (*Requirement, error) {
	if near == "" && maxRTT == "" {
		return nil, nil
	}
	r := &Requirement{}
	if near == "" {
		return nil, fmt.Errorf("%s=%q is set but %s is missing: add e.g. %s: \"origin:eu-users\" naming what the workload must be close to",
			AnnotationMaxRTT, maxRTT, AnnotationNear, AnnotationNear)
	}
	t, err := ParseNear(near)
	if err != nil {
		return nil, fmt.Errorf("invalid %s: %w; fix it to a comma-separated list like \"cluster:member2,origin:eu-users=3\" (weights 1-%d)", AnnotationNear, err, maxWeight)
	}
	r.Targets = t
	if maxRTT != "" {
		d, err := ParseMaxRTT(maxRTT)
		if err != nil {
			return nil, fmt.Errorf("invalid %s: %w; fix it to a Go duration such as \"40ms\"", AnnotationMaxRTT, err)
		}
		r.MaxRTT = d
	}
	return r, nil
}
