package options

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

func parse(t *testing.T, args ...string) *Options {
	t.Helper()
	o := New()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		args []string
		want []string // fields in error
	}{
		"defaults plus repository": {args: []string{"--checkpoint-repository=reg:5000/lm"}},
		"repository missing":       {want: []string{"flags.checkpoint-repository"}},
		"bad values": {
			args: []string{"--checkpoint-repository=r", "--poll-interval=0s", "--precopy-max-rounds=0", "--default-bandwidth=0", "--webhook-port=70000"},
			want: []string{"flags.default-bandwidth", "flags.poll-interval", "flags.precopy-max-rounds", "flags.webhook-port"},
		},
		"source claim policy":               {args: []string{"--checkpoint-repository=r", "--source-claim-policy=delete"}},
		"source claim retention":            {args: []string{"--checkpoint-repository=r", "--source-claim-retention=72h"}},
		"negative source claim retention":   {args: []string{"--checkpoint-repository=r", "--source-claim-retention=-1h"}, want: []string{"flags.source-claim-retention"}},
		"bad source claim policy":           {args: []string{"--checkpoint-repository=r", "--source-claim-policy=Keep"}, want: []string{"flags.source-claim-policy"}},
		"negative limits":                   {args: []string{"--checkpoint-repository=r", "--max-active-migrations=-1"}, want: []string{"flags.max-active-migrations"}},
		"webhook disabled ignores its port": {args: []string{"--checkpoint-repository=r", "--enable-webhook=false", "--webhook-port=0"}},
		"repository per target cluster": {args: []string{"--checkpoint-repository=reg:5000/lm",
			"--checkpoint-repository-for=member2=reg-eu:5000/lm,member3=10.0.0.3:5000/a/b"}},
		"rebalancing in Auto":         {args: []string{"--checkpoint-repository=r", "--rebalance-mode=Auto", "--rebalance-interval=30s", "--rebalance-high=90", "--rebalance-low=40"}},
		"rebalancing off by interval": {args: []string{"--checkpoint-repository=r", "--rebalance-interval=0"}},
		"bad rebalancing values": {
			args: []string{"--checkpoint-repository=r", "--rebalance-mode=auto", "--rebalance-interval=1s", "--rebalance-high=120",
				"--rebalance-cooldown=-1m", "--rebalance-max-moves-per-round=0"},
			want: []string{"flags.rebalance-cooldown", "flags.rebalance-high", "flags.rebalance-interval", "flags.rebalance-max-moves-per-round", "flags.rebalance-mode"},
		},
		"low band not below the high band": {args: []string{"--checkpoint-repository=r", "--rebalance-high=60", "--rebalance-low=60"}, want: []string{"flags.rebalance-low"}},
		"repository with a tag":            {args: []string{"--checkpoint-repository=reg:5000/lm:v1"}, want: []string{"flags.checkpoint-repository"}},
		"agent namespace per cluster":      {args: []string{"--checkpoint-repository=r", "--agent-namespace=lm", "--agent-namespace-for=member2=lm-agents"}},
		"no agent namespace":               {args: []string{"--checkpoint-repository=r", "--agent-namespace="}, want: []string{"flags.agent-namespace"}},
		"bad agent namespace per cluster": {
			args: []string{"--checkpoint-repository=r", "--agent-namespace-for=Member_2=lm,member3=Not.A.Namespace,member4="},
			want: []string{"flags.agent-namespace-for[Member_2]", "flags.agent-namespace-for[member3]", "flags.agent-namespace-for[member4]"},
		},
		"bad repository per target cluster": {
			args: []string{"--checkpoint-repository=reg:5000/lm", "--checkpoint-repository-for=Member_2=reg:5000/lm,member3=reg:5000/lm@sha256:00,member4="},
			want: []string{"flags.checkpoint-repository-for[Member_2]", "flags.checkpoint-repository-for[member3]", "flags.checkpoint-repository-for[member4]"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, e := range parse(t, tc.args...).Validate() {
				got = append(got, e.Field)
			}
			sortStrings(got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("invalid fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckpointRepositoryFor(t *testing.T) {
	o := parse(t, "--checkpoint-repository=reg:5000/lm", "--checkpoint-repository-for=member2=reg-eu:5000/lm,member3=reg-us:5000/lm")
	want := map[string]string{"member2": "reg-eu:5000/lm", "member3": "reg-us:5000/lm"}
	if diff := cmp.Diff(want, o.CheckpointRepositoryFor); diff != "" {
		t.Errorf("checkpoint-repository-for (-want +got):\n%s", diff)
	}
}

func TestQuantityFlag(t *testing.T) {
	o := parse(t, "--default-bandwidth=1Gi")
	if got := o.DefaultBandwidth.Value(); got != 1<<30 {
		t.Errorf("default-bandwidth = %d, want 1Gi", got)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	New().AddFlags(fs)
	err := fs.Parse([]string{"--default-bandwidth=fast"})
	if err == nil || !strings.Contains(err.Error(), "e.g. 100Mi") {
		t.Errorf("err = %v, want a hint", err)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
