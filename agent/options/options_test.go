package options

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"node mode with node name", []string{"--node-name=n1"}, ""},
		{"restore mode needs no node", []string{"--mode=restore", "--node-name="}, ""},
		{"node mode without node", []string{"--node-name="}, "--node-name"},
		{"bad mode", []string{"--mode=x", "--node-name=n"}, "--mode"},
		{"bad port", []string{"--node-name=n", "--kubelet-port=70000"}, "--kubelet-port"},
		{"bad driver", []string{"--node-name=n", "--cgroup-driver=x"}, "--cgroup-driver"},
		{"bad version", []string{"--node-name=n", "--cgroup-version=v3"}, "--cgroup-version"},
		{"member over total", []string{"--node-name=n", "--archive-max-bytes=10", "--archive-max-member-bytes=11"}, "--archive-max-member-bytes"},
		{"no checkpoint dir", []string{"--node-name=n", "--checkpoint-dir="}, "--checkpoint-dir"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := New()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error about %s", err, tc.wantErr)
			}
		})
	}
}

func TestEveryFlagIsExplained(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	New().AddFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if len(f.Usage) < 20 {
			t.Errorf("flag --%s has no real help text: %q", f.Name, f.Usage)
		}
	})
}
