// Command realnode pushes the images a real kubelet with CRI-O needs on this
// machine to a plain-HTTP registry (the lab's). Used by hack/real-node.sh
// (docs/real-node.md).
//
//	go run ./hack/realnode images --registry 127.0.0.1:5000 --labapp bin/labapp --pause PAUSE
//	go run ./hack/realnode checkpoint-image --archive checkpoint.tar --container NAME --ref 127.0.0.1:5000/x/y:tag
//	go run ./hack/realnode counter --state-dir DIR --pid PID
//
// images pushes the lab app image, built as the lab node runtime builds it
// (test/labnode.LabAppImage), and a pause image holding a static pause
// binary for CRI-O's pause_image. checkpoint-image pushes a checkpoint
// archive (as the kubelet's checkpoint API writes it) as the checkpoint image
// CRI-O restores from, built as the agent builds it (agent/checkpointimage).
// Each prints one line per image, "<name>@<digest>". counter prints the
// committed counter of a running lab app: its memory layout from the state
// directory the app wrote (test/labapp/labstate), read at the host PID of the
// process (CRIU restores the region at the same address).
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
	"github.com/livemigrate/livemigrate/test/labnode"
)

// pausePath is where the pause binary lies in the pause image (CRI-O's
// default pause_command).
const pausePath = "/pause"

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		return errors.New("missing command: write images, checkpoint-image or counter")
	}
	switch os.Args[1] {
	case "images":
		return images(ctx, os.Args[2:])
	case "checkpoint-image":
		return checkpointImage(ctx, os.Args[2:])
	case "counter":
		return counter(os.Args[2:])
	default:
		return fmt.Errorf("unknown command %q: write images, checkpoint-image or counter", os.Args[1])
	}
}

func counter(args []string) error {
	fs := flag.NewFlagSet("counter", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "the lab app's --state-dir, as the host sees it (required)")
	pid := fs.Int("pid", 0, "the lab app's PID on the host (required)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *stateDir == "" || *pid <= 0 {
		return errors.New("--state-dir and --pid are required")
	}
	l, err := labstate.ReadLayout(*stateDir)
	if err != nil {
		return fmt.Errorf("reading the layout in --state-dir %s: %w", *stateDir, err)
	}
	l.PID = *pid
	c, err := labstate.PeekCounter(l)
	if err != nil {
		return fmt.Errorf("reading the counter of PID %d: %w", *pid, err)
	}
	fmt.Println(c)
	return nil
}

func checkpointImage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("checkpoint-image", flag.ContinueOnError)
	archive := fs.String("archive", "", "the checkpoint archive (required)")
	container := fs.String("container", "", "the checkpointed container's name (required)")
	ref := fs.String("ref", "", "image reference to push to, host:port/repository:tag (required)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	for flagName, v := range map[string]string{"archive": *archive, "container": *container, "ref": *ref} {
		if v == "" {
			return fmt.Errorf("--%s is required", flagName)
		}
	}
	res, err := checkpointimage.PushArchive(ctx, *archive, *container, nil, *ref, checkpointimage.PushOptions{Insecure: true})
	if err != nil {
		return fmt.Errorf("pushing %s as %s: %w", *archive, *ref, err)
	}
	fmt.Println(res.Reference)
	return nil
}

func images(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	registry := fs.String("registry", "", "host:port of the plain-HTTP registry to push to (required)")
	labapp := fs.String("labapp", "bin/labapp", "the labapp binary")
	pause := fs.String("pause", "", "a static pause binary (required; go build ./hack/realnode/pause with CGO_ENABLED=0)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *registry == "" {
		return errors.New("--registry is required: write --registry=HOST:PORT of the lab registry")
	}
	if *pause == "" {
		return errors.New("--pause is required: write --pause=PATH of a static pause binary")
	}
	app, err := labnode.LabAppImage(*labapp)
	if err != nil {
		return fmt.Errorf("building the lab app image from %s: %w", *labapp, err)
	}
	pauseImg, err := pauseImage(*pause)
	if err != nil {
		return fmt.Errorf("building the pause image from %s: %w", *pause, err)
	}
	for _, im := range []struct {
		repo string
		img  v1.Image
	}{{"livemigrate/labapp", app}, {"livemigrate/pause", pauseImg}} {
		ref, err := name.NewTag(strings.TrimSuffix(*registry, "/")+"/"+im.repo+":latest", name.Insecure)
		if err != nil {
			return fmt.Errorf("--registry %q: %w", *registry, err)
		}
		if err := remote.Write(ref, im.img, remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		d, err := im.img.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s@%s\n", ref, d)
	}
	return nil
}

// pauseImage is an image of one layer holding the pause binary at /pause,
// which is its entrypoint.
func pauseImage(bin string) (v1.Image, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(pausePath, "/"), Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(b); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{pausePath}
	return mutate.ConfigFile(img, cf)
}
