package app

import (
	"flag"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/livemigrate/livemigrate/agent/options"
	"github.com/livemigrate/livemigrate/agent/replication"
)

// NewFlagSet returns the agent's command line: the flags of its options,
// of volume replication, and klog's, which are registered on goflags (the
// command's flag.CommandLine) and added with every other flag goflags
// holds.
func NewFlagSet(o *options.Options, ro *replication.Options, goflags *flag.FlagSet) *pflag.FlagSet {
	fs := pflag.NewFlagSet("livemigrate-agent", pflag.ContinueOnError)
	o.AddFlags(fs)
	ro.AddFlags(fs)
	klog.InitFlags(goflags)
	fs.AddGoFlagSet(goflags)
	return fs
}
