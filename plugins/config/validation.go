package config

import (
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate checks a defaulted configuration.
func Validate(c *SchedulerPluginsConfiguration) field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{APIVersion}))
	}
	if c.Kind != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), c.Kind, []string{Kind}))
	}
	if c.Capacity != nil {
		errs = append(errs, ValidateCapacityArgs(field.NewPath("capacity"), c.Capacity)...)
	}
	if c.Latency != nil {
		errs = append(errs, ValidateLatencyArgs(field.NewPath("latency"), c.Latency)...)
	}
	return errs
}

// ValidateCapacityArgs checks defaulted Capacity args.
func ValidateCapacityArgs(p *field.Path, a *CapacityArgs) field.ErrorList {
	var errs field.ErrorList
	if a.Strategy == nil {
		errs = append(errs, field.Required(p.Child("strategy"), ""))
	} else if *a.Strategy != LeastAllocated && *a.Strategy != MostAllocated {
		errs = append(errs, field.NotSupported(p.Child("strategy"), *a.Strategy, []string{string(LeastAllocated), string(MostAllocated)}))
	}
	var sum int64
	for name, w := range a.ResourceWeights {
		if name == "" {
			errs = append(errs, field.Invalid(p.Child("resourceWeights"), name, "resource name must not be empty"))
		}
		if w < 0 || w > 100 {
			errs = append(errs, field.Invalid(p.Child("resourceWeights").Key(string(name)), w, "must be between 0 and 100"))
		}
		sum += w
	}
	if len(a.ResourceWeights) > 0 && sum == 0 {
		errs = append(errs, field.Invalid(p.Child("resourceWeights"), a.ResourceWeights, "at least one weight must be positive"))
	}
	return errs
}

// ValidateLatencyArgs checks defaulted Latency args.
func ValidateLatencyArgs(p *field.Path, a *LatencyArgs) field.ErrorList {
	var errs field.ErrorList
	if a.MaxAge == nil {
		errs = append(errs, field.Required(p.Child("maxAge"), ""))
	} else if a.MaxAge.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("maxAge"), a.MaxAge.Duration.String(), "must be positive"))
	}
	if a.Percentile == nil {
		errs = append(errs, field.Required(p.Child("percentile"), ""))
	} else if *a.Percentile != P50 && *a.Percentile != P90 {
		errs = append(errs, field.NotSupported(p.Child("percentile"), *a.Percentile, []string{string(P50), string(P90)}))
	}
	for i, r := range a.TemplateResources {
		if _, err := ParseGVR(r); err != nil {
			errs = append(errs, field.Invalid(p.Child("templateResources").Index(i), r, err.Error()))
		}
	}
	if a.InformerSyncTimeout != nil && a.InformerSyncTimeout.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("informerSyncTimeout"), a.InformerSyncTimeout.Duration.String(), "must be positive"))
	}
	return errs
}

// ParseGVR parses "resource.version.group" ("deployments.v1.apps"; a core
// resource as "services.v1." or "services.v1").
func ParseGVR(s string) (schema.GroupVersionResource, error) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return schema.GroupVersionResource{}, errInvalidGVR
	}
	gvr := schema.GroupVersionResource{Resource: parts[0], Version: parts[1]}
	if len(parts) == 3 {
		gvr.Group = parts[2]
	}
	return gvr, nil
}

type gvrError struct{}

func (gvrError) Error() string {
	return `must be "resource.version.group", e.g. "deployments.v1.apps" or "services.v1."`
}

var errInvalidGVR error = gvrError{}
