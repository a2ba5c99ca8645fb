package main

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/livemigrate/livemigrate/test/chart"
)

// chartImages renders the chart's host and member releases (the prober
// on) with the given extra values and returns every container image and
// where it is used.
func chartImages(t *testing.T, root string, sets ...string) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := map[string][]string{}
	for _, r := range []struct {
		namespace string
		sets      []string
	}{
		{"karmada-system", []string{"installMode=host", "descheduler.checkpointRepository=registry.example.com/livemigrate/checkpoints"}},
		{"livemigrate-system", []string{"installMode=member", "prober.enabled=true", "prober.clusterName=member1"}},
	} {
		objs, err := chart.Render(ctx, root, r.namespace, append(r.sets, sets...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.GetKind() != "Deployment" && o.GetKind() != "DaemonSet" {
				continue
			}
			spec, err := chart.PodSpec(o)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
				out[c.Image] = append(out[c.Image], o.GetKind()+" "+o.GetName()+" container "+c.Name)
			}
		}
	}
	return out
}

// TestImagesAreTheChartsDefaultImages: with its default --repository and
// --tag, make images names every image exactly as the chart's default
// values name it, builds every image the chart uses (and none it does
// not), and once pushed to a registry every image the chart names there
// is the one built.
func TestImagesAreTheChartsDefaultImages(t *testing.T) {
	root := repoRoot(t)
	repository, tag, err := chartImageDefaults(root)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	stub := filepath.Join(tmp, "stub")
	if err := os.WriteFile(stub, []byte("stub\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, filepath.Join(tmp, "out"))
	o.Repository, o.Tag = repository, tag
	o.Binaries = map[string]string{}
	for _, c := range componentNames() {
		o.Binaries[c] = stub
	}
	built := map[string]Result{}
	for _, r := range build(t, o, componentNames()...) {
		built[r.Reference] = r
	}

	images := chartImages(t, root)
	for image, users := range images {
		if _, ok := built[image]; !ok {
			t.Errorf("the chart's default image %s (%v) is not one make images builds by default (%v)", image, users, keys(built))
		}
	}
	for ref := range built {
		if _, ok := images[ref]; !ok {
			t.Errorf("make images builds %s, which the chart's defaults do not use (%v)", ref, keys(images))
		}
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	prefix := u.Host + "/livemigrate"
	var results []Result
	for _, r := range built {
		results = append(results, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := pushAll(ctx, results, prefix, tag, true); err != nil {
		t.Fatal(err)
	}
	for image, users := range chartImages(t, root, "image.registry="+prefix) {
		ref, err := name.ParseReference(image, name.Insecure)
		if err != nil {
			t.Fatalf("%s (%v): %v", image, users, err)
		}
		desc, err := remote.Get(ref, remote.WithContext(ctx))
		if err != nil {
			t.Errorf("%s (%v) is not in the registry make images pushed to: %v", image, users, err)
			continue
		}
		want, ok := built[repository+"/"+path.Base(ref.Context().RepositoryStr())+":"+tag]
		if !ok || desc.Digest != want.Digest {
			t.Errorf("%s (%v) resolves to %s, not the image built for it", image, users, desc.Digest)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
