package scenario

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// DocExample is one YAML object shown in a fenced ```yaml block of a
// markdown file.
type DocExample struct {
	// File (relative to the repository) and Line of the block's fence.
	File string
	Line int
	// YAML is the object's text as the block shows it.
	YAML []byte
	// Object is the object decoded as a client decodes it.
	Object *unstructured.Unstructured
}

func (d DocExample) String() string {
	return fmt.Sprintf("%s:%d %s %s", d.File, d.Line, d.Object.GetKind(), d.Object.GetName())
}

// DocExamples returns every object of the ```yaml and ```yml blocks of the
// markdown files, in order. A block may hold several documents (---).
func DocExamples(root string, files ...string) ([]DocExample, error) {
	var out []DocExample
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return nil, err
		}
		var block []byte
		inBlock, start := false, 0
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			trimmed := strings.TrimSpace(line)
			switch {
			case !inBlock && (trimmed == "```yaml" || trimmed == "```yml"):
				inBlock, start, block = true, n, nil
			case inBlock && trimmed == "```":
				inBlock = false
				objs, err := decodeDocs(block)
				if err != nil {
					return nil, fmt.Errorf("%s:%d: %w", f, start, err)
				}
				for i := range objs {
					objs[i].File, objs[i].Line = f, start
				}
				out = append(out, objs...)
			case inBlock:
				block = append(append(block, line...), '\n')
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func decodeDocs(block []byte) ([]DocExample, error) {
	var out []DocExample
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(block)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, err
		}
		out = append(out, DocExample{YAML: doc, Object: u})
	}
}

// Kubectl runs the lab's kubectl against the Karmada plane with stdin
// as input and returns its combined output.
func (e *Env) Kubectl(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, e.bin("kubectl"), append([]string{"--kubeconfig=" + e.Karmada.Kubeconfig}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// ApplyMigration applies manifest, a LiveMigration of the app named name,
// with `kubectl apply -f -` (as a user applies an example), follows it with
// `kubectl livemigrate status <name> --wait` and observes the source and
// target lab app processes meanwhile, as Move does.
func (a *App) ApplyMigration(ctx context.Context, manifest []byte, name, target string) (*Observation, error) {
	srcs, why, err := a.runningPods(ctx, a.Source)
	if err != nil {
		return nil, err
	}
	if len(srcs) != a.Replicas {
		return nil, fmt.Errorf("%d of %d source pods run before the migration: %s", len(srcs), a.Replicas, why)
	}
	obs := &Observation{Source: srcs[0], Sources: srcs}
	octx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		obs.PerSource = a.observe(octx, srcs, target)
		obs.Samples = obs.PerSource[0]
	}()
	start := time.Now()
	fmt.Fprintf(a.Env.Out, "$ kubectl apply -f - <<EOF\n%sEOF\n", manifest)
	out, err := a.Env.Kubectl(ctx, manifest, "apply", "-f", "-")
	fmt.Fprintf(a.Env.Out, "%s", out)
	if err != nil {
		stop()
		wg.Wait()
		return nil, err
	}
	args := []string{"--kubeconfig=" + a.Env.Karmada.Kubeconfig, "-n", a.Namespace, "status", name, "--wait"}
	cmd := exec.CommandContext(ctx, a.Env.bin("kubectl-livemigrate"), args...)
	cmd.Stdout, cmd.Stderr = a.Env.Out, a.Env.Out
	fmt.Fprintf(a.Env.Out, "$ kubectl livemigrate %s\n", strings.Join(args[1:], " "))
	obs.Err = cmd.Run()
	obs.Duration = time.Since(start)
	stop()
	wg.Wait()
	// Read where it ended even when ctx ran out waiting for it.
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	lm := &lmv1alpha1.LiveMigration{}
	if err := a.Env.Karmada.CR.Get(gctx, client.ObjectKey{Namespace: a.Namespace, Name: name}, lm); err != nil {
		return obs, err
	}
	obs.Migration = lm
	return obs, nil
}

// StoredSpec is the spec of an object of the Karmada plane as stored, in
// the spelling it was written in.
func (e *Env) StoredSpec(ctx context.Context, kind, ns, name string) (map[string]interface{}, error) {
	out, err := e.Kubectl(ctx, nil, "get", kind, "-n", ns, name, "-o", "json")
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(out); err != nil {
		return nil, err
	}
	spec, _, err := unstructured.NestedMap(u.Object, "spec")
	return spec, err
}
