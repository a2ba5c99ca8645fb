package lab

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// kwokStage is the part of a kwok Stage the lab's configuration decides.
type kwokStage struct {
	Metadata struct{ Name string }
	Spec     struct {
		Selector struct {
			MatchExpressions []struct{ Key, Operator string }
		}
		Delay *struct {
			DurationFrom *struct {
				ExpressionFrom string `json:"expressionFrom"`
			} `json:"durationFrom"`
		}
		Next struct{ Delete bool }
	}
}

// TestKwokConfigLeavesRuntimePodsToTheRuntime: with kwok's own stages, the
// lab's kwok configuration leaves the status and the deletion of the lab
// node runtime's pods to that runtime (which removes a deleted pod only
// once its processes stopped, as a kubelet does); kwok removes such a pod
// only at the end of its grace period, for a runtime that is down. Other
// pods keep kwok's stages.
func TestKwokConfigLeavesRuntimePodsToTheRuntime(t *testing.T) {
	dir, err := kwokModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range kwokStages {
		paths = append(paths, filepath.Join(dir, s))
	}
	orig, err := readFiles(paths...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kwokConfig(orig)
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]kwokStage{}
	for _, doc := range bytes.Split(cfg, []byte("\n---\n")) {
		doc = bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("---"))
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var s kwokStage
		if err := yaml.Unmarshal(doc, &s); err != nil {
			t.Fatalf("the configuration is not YAML: %v\n%s", err, doc)
		}
		stages[s.Metadata.Name] = s
	}
	runtimeKey := `.metadata.labels."` + labelRuntime + `"`
	selects := func(s kwokStage) string {
		for _, e := range s.Spec.Selector.MatchExpressions {
			if e.Key == runtimeKey {
				return e.Operator
			}
		}
		return ""
	}
	for name, want := range map[string]string{
		"node-initialize": "", "node-heartbeat-with-lease": "", "pod-complete": "",
		"pod-ready": "DoesNotExist", "pod-delete": "DoesNotExist", "lab-runtime-pod-delete": "Exists",
	} {
		s, ok := stages[name]
		if !ok {
			t.Errorf("no stage %s in the configuration", name)
			continue
		}
		if got := selects(s); got != want {
			t.Errorf("stage %s selects %s with %q, want %q", name, runtimeKey, got, want)
		}
	}
	d := stages["lab-runtime-pod-delete"]
	if !d.Spec.Next.Delete || d.Spec.Delay == nil || d.Spec.Delay.DurationFrom == nil || d.Spec.Delay.DurationFrom.ExpressionFrom != ".metadata.deletionTimestamp" {
		t.Errorf("stage lab-runtime-pod-delete = %+v, want a delete delayed until the pod's deletionTimestamp", d.Spec)
	}

	// A changed kwok stage is an error, not a lab whose kwok takes the
	// runtime's pods.
	changed := bytes.Replace(orig, []byte("operator: 'Exists'\n  next:\n    delete: true"), []byte("operator: 'Exists'\n  next:\n    delete: false"), 1)
	if _, err := kwokConfig(changed); err == nil || !strings.Contains(err.Error(), "pod-delete") {
		t.Errorf("a changed pod-delete stage: err = %v, want one naming it", err)
	}
}
