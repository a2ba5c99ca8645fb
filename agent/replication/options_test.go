package replication

import (
	"testing"

	"github.com/spf13/pflag"
)

func valid() *Options {
	o := NewOptions()
	o.NodeName = "node-1"
	o.AdvertiseHost = "10.0.0.1"
	return o
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr bool
	}{
		{name: "defaults with node and address", mutate: func(*Options) {}},
		{name: "disabled needs nothing", mutate: func(o *Options) { *o = Options{} }},
		{name: "no node", mutate: func(o *Options) { o.NodeName = "" }, wantErr: true},
		{name: "no advertise host", mutate: func(o *Options) { o.AdvertiseHost = "" }, wantErr: true},
		{name: "no port", mutate: func(o *Options) { o.Port = 0 }, wantErr: true},
		{name: "port out of range", mutate: func(o *Options) { o.Port = 70000 }, wantErr: true},
		{name: "deprecated port range alone", mutate: func(o *Options) { o.PortMin, o.PortMax = 9000, 9010 }},
		{name: "deprecated port range disagreeing with the port", mutate: func(o *Options) { o.Port, o.PortMin = 9000, 8000 }, wantErr: true},
		{name: "no start retry timeout", mutate: func(o *Options) { o.StartRetryTimeout = 0 }, wantErr: true},
		{name: "relative kubelet root", mutate: func(o *Options) { o.KubeletRoot = "var/lib/kubelet" }, wantErr: true},
		{name: "root as target root", mutate: func(o *Options) { o.TargetRoots = []string{"/"} }, wantErr: true},
		{name: "no target roots", mutate: func(o *Options) { o.TargetRoots = nil }, wantErr: true},
		{name: "bad bandwidth", mutate: func(o *Options) { o.BandwidthLimit = "fast" }, wantErr: true},
		{name: "negative bandwidth", mutate: func(o *Options) { o.BandwidthLimit = "-1" }, wantErr: true},
		{name: "tiny block size", mutate: func(o *Options) { o.BlockSize = 100 }, wantErr: true},
		{name: "zero rounds", mutate: func(o *Options) { o.MaxRounds = 0 }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.mutate(o)
			if err := o.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestFlagsToConfig(t *testing.T) {
	o := valid()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--replication-bandwidth-limit=12500000", "--replication-convergence-threshold=1Mi", "--replication-max-rounds=7", "--replication-target-roots=/a,/b"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	c := o.Config()
	if c.DefaultBandwidthLimit != 12500000 || c.DefaultConvergenceThreshold != 1<<20 || c.DefaultMaxRounds != 7 || len(c.TargetRoots) != 2 {
		t.Errorf("config = %+v", c)
	}
}

// TestPortFlags: --replication-port sets the shared port; the deprecated
// range flags still work, their minimum taken as the port.
func TestPortFlags(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{args: nil, want: DefaultPort},
		{args: []string{"--replication-port=9100"}, want: 9100},
		{args: []string{"--replication-port-min=9200", "--replication-port-max=9200"}, want: 9200},
	}
	for _, tt := range tests {
		o := valid()
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if err := o.Validate(); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if got := o.Config().Port; got != tt.want {
			t.Errorf("%v: port %d, want %d", tt.args, got, tt.want)
		}
	}
}
