package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLoad(t *testing.T) {
	most, p90 := MostAllocated, P90
	tests := []struct {
		name    string
		yaml    string
		want    *SchedulerPluginsConfiguration
		wantErr string
	}{
		{
			name: "defaults",
			yaml: "apiVersion: config.livemigrate.io/v1alpha1\nkind: SchedulerPluginsConfiguration\n",
		},
		{
			name: "full",
			yaml: `apiVersion: config.livemigrate.io/v1alpha1
kind: SchedulerPluginsConfiguration
capacity:
  strategy: MostAllocated
  resourceWeights: {cpu: 2, nvidia.com/gpu: 5}
latency:
  maxAge: 90s
  percentile: p90
  templateResources: [statefulsets.v1.apps, services.v1.]
  informerSyncTimeout: 3s
`,
			want: &SchedulerPluginsConfiguration{
				TypeMeta: metav1.TypeMeta{APIVersion: APIVersion, Kind: Kind},
				Capacity: &CapacityArgs{Strategy: &most, ResourceWeights: map[corev1.ResourceName]int64{"cpu": 2, "nvidia.com/gpu": 5}},
				Latency: &LatencyArgs{MaxAge: &metav1.Duration{Duration: 90 * time.Second}, Percentile: &p90,
					TemplateResources:   []string{"statefulsets.v1.apps", "services.v1."},
					InformerSyncTimeout: &metav1.Duration{Duration: 3 * time.Second}},
			},
		},
		{name: "missing kind", yaml: "capacity: {}\n", wantErr: "apiVersion"},
		{name: "wrong kind", yaml: "apiVersion: config.livemigrate.io/v1alpha1\nkind: Nope\n", wantErr: "kind"},
		{name: "unknown field", yaml: "apiVersion: config.livemigrate.io/v1alpha1\nkind: SchedulerPluginsConfiguration\ncapacity: {stratgy: x}\n", wantErr: "unknown field"},
		{name: "bad strategy", yaml: "apiVersion: config.livemigrate.io/v1alpha1\nkind: SchedulerPluginsConfiguration\ncapacity: {strategy: Balanced}\n", wantErr: "capacity.strategy"},
		{name: "bad weight", yaml: "apiVersion: config.livemigrate.io/v1alpha1\nkind: SchedulerPluginsConfiguration\ncapacity: {resourceWeights: {cpu: 101}}\n", wantErr: "capacity.resourceWeights[cpu]"},
		{name: "bad max age", yaml: "apiVersion: config.livemigrate.io/v1alpha1\nkind: SchedulerPluginsConfiguration\nlatency: {maxAge: -1s}\n", wantErr: "latency.maxAge"},
		{name: "bad percentile", yaml: "apiVersion: config.livemigrate.io/v1alpha1\nkind: SchedulerPluginsConfiguration\nlatency: {percentile: p99}\n", wantErr: "latency.percentile"},
		{name: "bad resource", yaml: "apiVersion: config.livemigrate.io/v1alpha1\nkind: SchedulerPluginsConfiguration\nlatency: {templateResources: [deployments]}\n", wantErr: "latency.templateResources[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Load(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == nil {
				want = &SchedulerPluginsConfiguration{}
				SetDefaults(want)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadEmptyPathIsDefaults(t *testing.T) {
	got, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if *got.Capacity.Strategy != LeastAllocated || got.Latency.MaxAge.Duration != DefaultLatencyMaxAge {
		t.Errorf("not defaulted: %+v", got)
	}
}

// TestShippedExamples loads the configuration files shipped in manifests/.
func TestShippedExamples(t *testing.T) {
	got, err := Load("../../manifests/scheduler/scheduler-plugins.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &SchedulerPluginsConfiguration{}
	SetDefaults(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the shipped example is not the defaults (-want +got):\n%s", diff)
	}
}
