// Package options holds the flags livemigrate-scheduler adds to the stock
// karmada-scheduler flags.
package options

import (
	"os"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Options are the livemigrate flags.
type Options struct {
	// ConfigFile is the SchedulerPluginsConfiguration file
	// (config.livemigrate.io/v1alpha1); empty means all defaults.
	ConfigFile string
}

// NewOptions returns the defaults.
func NewOptions() *Options { return &Options{} }

// AddFlags adds the livemigrate flags to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ConfigFile, "livemigrate-config", o.ConfigFile,
		"Path to the livemigrate plugins configuration file (apiVersion: config.livemigrate.io/v1alpha1, kind: SchedulerPluginsConfiguration; "+
			"sections capacity {strategy, resourceWeights} and latency {maxAge, percentile, templateResources, informerSyncTimeout}). "+
			"Empty: defaults. The plugins themselves are enabled with --plugins (default '*' enables Capacity and Latency too).")
}

// Validate checks the flags.
func (o *Options) Validate() field.ErrorList {
	var errs field.ErrorList
	if o.ConfigFile != "" {
		if st, err := os.Stat(o.ConfigFile); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("livemigrate-config"), o.ConfigFile, err.Error()))
		} else if st.IsDir() {
			errs = append(errs, field.Invalid(field.NewPath("livemigrate-config"), o.ConfigFile, "is a directory"))
		}
	}
	return errs
}
