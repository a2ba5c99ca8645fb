// Package chart renders the project's Helm chart (charts/livemigrate) with
// the Helm Go SDK, through the chartrender command of hack/tools/helm (its
// own module, so that the SDK's dependencies stay out of the main module),
// and gives tests the rendered objects and the command line of each
// rendered container.
//
// It never talks to a cluster: the lab test applies what it renders.
package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Dir is the chart's directory relative to the repository root.
const Dir = "charts/livemigrate"

var buildMu sync.Mutex

// Renderer builds (once per process; go build is incremental) and returns
// the path of bin/chartrender under the repository root.
func Renderer(ctx context.Context, root string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	out := filepath.Join(root, "bin", "chartrender")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join(root, "hack", "tools", "helm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building hack/tools/helm: %w\n%s", err, b)
	}
	return out, nil
}

// Render renders the chart for a release in namespace with the given
// --set values and returns its objects in the order Helm installs them.
func Render(ctx context.Context, root, namespace string, sets ...string) ([]*unstructured.Unstructured, error) {
	raw, err := RenderYAML(ctx, root, namespace, sets...)
	if err != nil {
		return nil, err
	}
	return Decode(raw)
}

// RenderYAML is Render's multi-document YAML.
func RenderYAML(ctx context.Context, root, namespace string, sets ...string) ([]byte, error) {
	bin, err := Renderer(ctx, root)
	if err != nil {
		return nil, err
	}
	args := []string{"render", "--chart", filepath.Join(root, Dir), "--namespace", namespace}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &RenderError{Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return stdout.Bytes(), nil
}

// RenderError is a render the chart refused; Stderr holds Helm's message.
type RenderError struct {
	Stderr string
	Err    error
}

func (e *RenderError) Error() string {
	return fmt.Sprintf("rendering the chart: %v: %s", e.Err, e.Stderr)
}
func (e *RenderError) Unwrap() error { return e.Err }

// Decode splits multi-document YAML into objects, skipping empty documents.
func Decode(raw []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decoding the rendered chart: %w", err)
		}
		if len(obj) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

// Find returns the rendered object of a kind and name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// PodSpec returns the pod template of a rendered Deployment or DaemonSet.
func PodSpec(o *unstructured.Unstructured) (*corev1.PodSpec, error) {
	switch o.GetKind() {
	case "Deployment":
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
			return nil, fmt.Errorf("deployment %s: %w", o.GetName(), err)
		}
		return &d.Spec.Template.Spec, nil
	case "DaemonSet":
		var d appsv1.DaemonSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
			return nil, fmt.Errorf("daemonset %s: %w", o.GetName(), err)
		}
		return &d.Spec.Template.Spec, nil
	}
	return nil, fmt.Errorf("%s %s has no pod template", o.GetKind(), o.GetName())
}

// Downward holds the values the kubelet gives a container's downward-API
// environment variables.
type Downward struct {
	NodeName, HostIP, PodIP, PodName, Namespace string
}

func (d Downward) field(path string) (string, bool) {
	switch path {
	case "spec.nodeName":
		return d.NodeName, true
	case "status.hostIP":
		return d.HostIP, true
	case "status.podIP":
		return d.PodIP, true
	case "metadata.name":
		return d.PodName, true
	case "metadata.namespace":
		return d.Namespace, true
	}
	return "", false
}

// Command is a container's command line and environment as the kubelet
// starts it: $(VAR) references in command and args expanded from the
// container's env, downward-API values filled in.
type Command struct {
	Path string
	Args []string
	Env  map[string]string
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// ContainerCommand returns what the kubelet would run for a container. A
// reference to a variable the container does not define, or an env value
// source other than a downward-API field, is an error: the kubelet would
// leave such a reference unexpanded.
func ContainerCommand(c *corev1.Container, d Downward) (*Command, error) {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			v, ok := d.field(e.ValueFrom.FieldRef.FieldPath)
			if !ok {
				return nil, fmt.Errorf("container %s: env %s: field %s is not filled in by this test", c.Name, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		default:
			return nil, fmt.Errorf("container %s: env %s: only values and downward-API fields are supported", c.Name, e.Name)
		}
	}
	cmdline := append(append([]string{}, c.Command...), c.Args...)
	if len(cmdline) == 0 {
		return nil, fmt.Errorf("container %s has no command: the image's entrypoint would run", c.Name)
	}
	for i, a := range cmdline {
		for _, m := range varRef.FindAllStringSubmatch(a, -1) {
			if _, ok := env[m[1]]; !ok {
				return nil, fmt.Errorf("container %s: argument %q refers to $(%s), which the container's env does not set", c.Name, a, m[1])
			}
		}
		cmdline[i] = expand(a, env)
	}
	return &Command{Path: cmdline[0], Args: cmdline[1:], Env: env}, nil
}

func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := env[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

// Flag returns the value of --name=value in args and whether it is there.
func Flag(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			return "true", true
		}
	}
	return "", false
}

// RepoFile reads a file of the repository.
func RepoFile(root, rel string) ([]byte, error) { return os.ReadFile(filepath.Join(root, rel)) }

// Helm runs one of the renderer's release commands (install, upgrade,
// uninstall: the Helm SDK's actions against the cluster of kubeconfig)
// for the release livemigrate in namespace and returns its output. The
// chart is the repository's; sets are --set values.
func Helm(ctx context.Context, root, verb, kubeconfig, namespace string, extra ...string) (string, error) {
	bin, err := Renderer(ctx, root)
	if err != nil {
		return "", err
	}
	args := []string{verb, "--kubeconfig", kubeconfig, "--namespace", namespace}
	if verb != "uninstall" {
		args = append(args, "--chart", filepath.Join(root, Dir))
	}
	args = append(args, extra...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s in %s: %w: %s", verb, namespace, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
