package main

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// The demo names the CRIU that took each checkpoint from the image's
// annotations, and says so when the image names none.
func TestCheckpointOrigins(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	criuAnns := map[string]string{
		metadata.CheckpointAnnotationCriuVersion: "4.2.1", metadata.CheckpointAnnotationRuntimeName: "runc",
		metadata.CheckpointAnnotationHostKernel: "6.18.0", metadata.CheckpointAnnotationHostArch: "amd64",
	}
	var refs []string
	for _, anns := range []map[string]string{criuAnns, {}} {
		p := filepath.Join(t.TempDir(), "checkpoint.tar")
		if err := os.WriteFile(p, make([]byte, 10240), 0o600); err != nil {
			t.Fatal(err)
		}
		ref := host + "/demo/db-0-app:" + map[bool]string{true: "criu", false: "standin"}[len(anns) > 0]
		res, err := checkpointimage.PushArchive(ctx, p, "app", anns, ref, checkpointimage.PushOptions{Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, res.Reference)
	}
	lm := &lmv1alpha1.LiveMigration{Status: lmv1alpha1.LiveMigrationStatus{Pods: []lmv1alpha1.PodMigrationStatus{
		{Name: "db-0", CheckpointImages: []lmv1alpha1.ContainerCheckpointImage{{Container: "app", Image: refs[0]}, {Container: "sidecar", Image: refs[1]}}},
	}}}
	got := checkpointOrigins(ctx, lm)
	want := []string{
		"checkpoint of db-0/app taken by CRIU 4.2.1 (runc, kernel 6.18.0, amd64), per its image's org.criu.checkpoint.* annotations",
		"checkpoint of db-0/sidecar: not taken by CRIU (its image names no CRIU version: the memory stand-in)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("checkpointOrigins:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
