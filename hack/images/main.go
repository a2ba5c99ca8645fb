// Command images builds the OCI images of livemigrate's components without
// a container engine: each image is the static Go binary (CGO_ENABLED=0,
// -trimpath) on a small root filesystem made of files from Debian packages
// (apt-get download, dpkg-deb), written with deterministic layers into an
// OCI image layout, and optionally pushed to a registry. See docs/images.md.
//
//	go run ./hack/images [--out bin/images] [--tag v<appVersion>] [--push REGISTRY/PREFIX] [component...]
//
// The images are named as the Helm chart's default values name them
// (charts/livemigrate: image.registry, and the tag v<appVersion>), so that
// the chart installs exactly what was built.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	out := fs.String("out", "bin/images", "directory receiving one OCI image layout per component (<out>/<component>)")
	repository := fs.String("repository", "", "image name prefix recorded in the images: <repository>/<component>:<tag> (default: the chart's image.registry)")
	tag := fs.String("tag", "", "image tag (default: the chart's, v<appVersion> of charts/livemigrate/Chart.yaml)")
	push := fs.String("push", "", "also push every image to <push>/<component>:<tag> (credentials from the Docker config, as docker login writes it)")
	insecure := fs.Bool("insecure", false, "with --push, allow a plain-HTTP registry")
	goarch := fs.String("goarch", "", "GOARCH of the binaries and images (default: go env GOARCH)")
	cacheDir := fs.String("cache", "", "directory keeping downloaded Debian packages (default: $XDG_CACHE_HOME/livemigrate/debs or ~/.cache/livemigrate/debs)")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "time (Unix seconds) of every file and of the image configuration (default: $SOURCE_DATE_EPOCH, else the HEAD commit's time)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./hack/images [flags] [component...]\n\nComponents: %s (default: all)\n\nFlags:\n", strings.Join(componentNames(), ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	names := fs.Args()
	if len(names) == 0 {
		names = componentNames()
	}

	repoDir, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	chartRepository, chartTag, err := chartImageDefaults(repoDir)
	if err != nil {
		return err
	}
	if *repository == "" {
		*repository = chartRepository
	}
	if *tag == "" {
		*tag = chartTag
	}
	o := Options{
		RepoDir:    repoDir,
		OutDir:     *out,
		Repository: *repository,
		Tag:        *tag,
		GOARCH:     *goarch,
		CacheDir:   *cacheDir,
		Log:        os.Stderr,
	}
	if o.GOARCH == "" {
		b, err := execGo(ctx, repoDir, "env", "GOARCH").Output()
		if err != nil {
			return fmt.Errorf("go env GOARCH: %w", err)
		}
		o.GOARCH = strings.TrimSpace(string(b))
	}
	if o.CacheDir == "" {
		if o.CacheDir, err = defaultCacheDir(); err != nil {
			return err
		}
	}
	o.Revision, o.Version = gitInfo(ctx, repoDir)
	switch {
	case *epoch != "":
		sec, err := strconv.ParseInt(*epoch, 10, 64)
		if err != nil {
			return fmt.Errorf("source date epoch %q: %w", *epoch, err)
		}
		o.Created = time.Unix(sec, 0)
	default:
		o.Created = time.Unix(0, 0)
		if b, err := gitOutput(ctx, repoDir, "log", "-1", "--format=%ct"); err == nil {
			if sec, err := strconv.ParseInt(b, 10, 64); err == nil {
				o.Created = time.Unix(sec, 0)
			}
		}
	}

	results, err := Build(ctx, o, names)
	if err != nil {
		return err
	}
	for _, r := range results {
		fmt.Printf("%s@%s\t%s\n", r.Reference, r.Digest, r.Layout)
	}
	if *push == "" {
		return nil
	}
	return pushAll(ctx, results, *push, o.Tag, *insecure)
}

// pushAll pushes every image to <prefix>/<component>:<tag>.
func pushAll(ctx context.Context, results []Result, prefix, tag string, insecure bool) error {
	for _, r := range results {
		var opts []name.Option
		if insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.NewTag(strings.TrimSuffix(prefix, "/")+"/"+r.Component+":"+tag, opts...)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, r.Image, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Printf("pushed %s@%s\n", ref, r.Digest)
	}
	return nil
}

func componentNames() []string {
	var n []string
	for _, c := range Components {
		n = append(n, c.Name)
	}
	return n
}

// execGo runs the go command of the toolchain in use.
func execGo(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	return cmd
}

func moduleRoot(ctx context.Context) (string, error) {
	b, err := execGo(ctx, "", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the livemigrate module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}

func defaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set --cache): %w", err)
	}
	return filepath.Join(d, "livemigrate", "debs"), nil
}

func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	return strings.TrimSpace(string(b)), err
}

// gitInfo returns the HEAD commit and git describe's name of the tree
// (empty outside a git checkout).
func gitInfo(ctx context.Context, dir string) (revision, version string) {
	revision, _ = gitOutput(ctx, dir, "rev-parse", "HEAD")
	version, _ = gitOutput(ctx, dir, "describe", "--tags", "--always", "--dirty")
	return revision, version
}
