package config

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// Load reads, defaults and validates the configuration file at path. An
// empty path yields the defaults.
func Load(path string) (*SchedulerPluginsConfiguration, error) {
	c := &SchedulerPluginsConfiguration{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading livemigrate config: %w", err)
		}
		if err := yaml.UnmarshalStrict(data, c); err != nil {
			return nil, fmt.Errorf("parsing livemigrate config %s: %w", path, err)
		}
		if c.APIVersion == "" || c.Kind == "" {
			return nil, fmt.Errorf("livemigrate config %s: apiVersion %q and kind %q are required", path, APIVersion, Kind)
		}
	}
	SetDefaults(c)
	if errs := Validate(c); len(errs) > 0 {
		return nil, fmt.Errorf("invalid livemigrate config %s: %w", path, errs.ToAggregate())
	}
	return c, nil
}
