package prober

import (
	"fmt"
	"net"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// Defaults of the configuration file.
const (
	DefaultInterval = 10 * time.Second
	DefaultSamples  = 5
	DefaultTimeout  = 2 * time.Second
	MaxSamples      = 100
)

// Target is one peer cluster or origin to probe.
type Target struct {
	// Name is the peer's Karmada cluster name, or the origin's name as
	// workloads write it in latency.livemigrate.io/near ("origin:NAME").
	Name string `json:"name"`
	// Address is the host:port of a TCP echo endpoint (e.g. a relay).
	Address string `json:"address"`
}

// Config is the prober's configuration file (YAML or JSON).
type Config struct {
	// ClusterName is this member cluster's name in Karmada; the prober
	// writes the ClusterLatency of that name.
	ClusterName string `json:"clusterName"`
	// ListenAddress is where the echo endpoint for peers listens (host:port).
	ListenAddress string `json:"listenAddress"`
	// Peers are the other member clusters' echo endpoints.
	Peers []Target `json:"peers,omitempty"`
	// Origins are named origins (user populations, data sources).
	Origins []Target `json:"origins,omitempty"`
	// Interval is the time between the starts of two probe rounds. Default 10s.
	Interval *metav1.Duration `json:"interval,omitempty"`
	// Samples is the number of RTT samples per target per round. Default 5.
	Samples *int32 `json:"samples,omitempty"`
	// Timeout bounds one sample (write + read back) and one dial. Default 2s.
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// LoadConfig reads, defaults and validates the file at path.
func LoadConfig(path string) (*Config, error) {
	c, err := loadUnvalidated(path)
	if err != nil {
		return nil, err
	}
	if errs := Validate(c); len(errs) > 0 {
		return nil, fmt.Errorf("invalid prober config %s: %w", path, errs.ToAggregate())
	}
	return c, nil
}

// SetDefaults fills what is unset.
func SetDefaults(c *Config) {
	if c.Interval == nil {
		c.Interval = &metav1.Duration{Duration: DefaultInterval}
	}
	if c.Samples == nil {
		n := int32(DefaultSamples)
		c.Samples = &n
	}
	if c.Timeout == nil {
		c.Timeout = &metav1.Duration{Duration: DefaultTimeout}
	}
}

// Validate checks a defaulted configuration.
func Validate(c *Config) field.ErrorList {
	var errs field.ErrorList
	root := field.NewPath("")
	if msgs := validation.IsDNS1123Subdomain(c.ClusterName); len(msgs) > 0 {
		errs = append(errs, field.Invalid(root.Child("clusterName"), c.ClusterName, fmt.Sprint(msgs)))
	}
	if err := checkAddress(c.ListenAddress); err != nil {
		errs = append(errs, field.Invalid(root.Child("listenAddress"), c.ListenAddress, err.Error()))
	}
	errs = append(errs, validateTargets(root.Child("peers"), c.Peers, c.ClusterName)...)
	errs = append(errs, validateTargets(root.Child("origins"), c.Origins, "")...)
	if len(c.Peers)+len(c.Origins) == 0 {
		errs = append(errs, field.Required(root.Child("peers"), "at least one peer or origin is needed"))
	}
	if c.Interval == nil || c.Interval.Duration < 100*time.Millisecond {
		errs = append(errs, field.Invalid(root.Child("interval"), c.Interval, "must be at least 100ms"))
	}
	if c.Samples == nil || *c.Samples < 1 || *c.Samples > MaxSamples {
		errs = append(errs, field.Invalid(root.Child("samples"), c.Samples, fmt.Sprintf("must be from 1 to %d", MaxSamples)))
	}
	if c.Timeout == nil || c.Timeout.Duration <= 0 {
		errs = append(errs, field.Invalid(root.Child("timeout"), c.Timeout, "must be positive"))
	} else if c.Interval != nil && c.Samples != nil && c.Timeout.Duration*time.Duration(*c.Samples) > 10*c.Interval.Duration {
		errs = append(errs, field.Invalid(root.Child("timeout"), c.Timeout.Duration.String(), "timeout × samples must not exceed 10 × interval"))
	}
	return errs
}

func validateTargets(p *field.Path, ts []Target, self string) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, t := range ts {
		if msgs := validation.IsDNS1123Subdomain(t.Name); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p.Index(i).Child("name"), t.Name, fmt.Sprint(msgs)))
		}
		if self != "" && t.Name == self {
			errs = append(errs, field.Invalid(p.Index(i).Child("name"), t.Name, "a cluster is not its own peer"))
		}
		if seen[t.Name] {
			errs = append(errs, field.Duplicate(p.Index(i).Child("name"), t.Name))
		}
		seen[t.Name] = true
		if err := checkAddress(t.Address); err != nil {
			errs = append(errs, field.Invalid(p.Index(i).Child("address"), t.Address, err.Error()))
		}
	}
	return errs
}

func checkAddress(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	_ = host
	if port == "" {
		return fmt.Errorf("want host:port: missing port")
	}
	return nil
}

func loadUnvalidated(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading prober config: %w", err)
	}
	c := &Config{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("parsing prober config %s: %w", path, err)
	}
	SetDefaults(c)
	return c, nil
}
