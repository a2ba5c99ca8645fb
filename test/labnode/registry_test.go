package labnode

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/agent/archive/layout"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
)

func TestRegistryServesCheckpointImages(t *testing.T) {
	for _, disk := range []bool{false, true} {
		dir := ""
		if disk {
			dir = filepath.Join(t.TempDir(), "not-yet-there")
		}
		reg, err := StartRegistry("", dir)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		src := t.TempDir()
		_ = os.WriteFile(filepath.Join(src, "pages-1.img"), bytes.Repeat([]byte{3}, 20<<20), 0o600)
		p := filepath.Join(t.TempDir(), "checkpoint-a_b-app-x.tar")
		f, _ := os.Create(p)
		if err := layout.Write(f, layout.Container{Name: "app", CheckpointedAt: time.Now()}, src); err != nil {
			t.Fatal(err)
		}
		f.Close()
		o := checkpointimage.PushOptions{Insecure: true}
		res, err := checkpointimage.PushArchive(context.Background(), p, "app", nil, reg.Host+"/lm/b-a-app:m1", o)
		if err != nil {
			t.Fatalf("disk=%v: push: %v", disk, err)
		}
		var buf bytes.Buffer
		if _, err := checkpointimage.Pull(context.Background(), res.Reference, &buf, o); err != nil {
			t.Fatalf("disk=%v: pull: %v", disk, err)
		}
		want, _ := os.ReadFile(p)
		if !bytes.Equal(want, buf.Bytes()) {
			t.Errorf("disk=%v: pulled archive differs", disk)
		}
	}
}
