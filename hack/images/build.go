package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Well-known users of every image (the same as distroless's).
const (
	nonrootUID = 65532
	nobodyUID  = 65534
)

// DebianPackagesLabel lists the Debian packages (name=version, sorted,
// space-separated) whose files are in the image. The OCI annotations have
// no key for it.
const DebianPackagesLabel = "io.livemigrate.image.debian-packages"

// Component is one image.
type Component struct {
	// Name is the binary (cmd/<Name>) and the image repository's last element.
	Name string
	// Description goes to org.opencontainers.image.description.
	Description string
	// Debian lists the packages (with their dependency closure) installed
	// into the image besides the base files. Empty: a static image, like
	// distroless/static.
	Debian []string
	// MinVersions refuses a build whose apt sources offer an older version
	// of a package (name → Debian version, compared as dpkg does).
	MinVersions map[string]string
}

// Components are the images of the project. kubectl-livemigrate (a kubectl
// plugin run by users) and livemigrate-lab (the test lab) get none.
var Components = []Component{
	{
		Name: "livemigrate-agent",
		Description: "livemigrate node agent (DaemonSet, privileged, runs as uid 0 by the manifest's runAsUser) and restore webhook (unprivileged, " +
			"the image's default user); replication runs Debian's rsync, whose -e remote shell needs sh (dash) and cat (coreutils)",
		Debian: []string{"rsync", "dash", "coreutils"},
		// 3.4.0 fixed a symlink race of the sender; docs/security.md relies
		// on the sender refusing a directory swapped during a pass, shown
		// with 3.5.0 (bookworm-security). bookworm alone offers 3.2.7.
		MinVersions: map[string]string{"rsync": "3.4.0"},
	},
	{Name: "livemigrate-scheduler", Description: "livemigrate Karmada scheduler with the live-migration plugins"},
	{Name: "livemigrate-descheduler", Description: "livemigrate descheduler: plans and drives live migrations between member clusters"},
	{Name: "livemigrate-prober", Description: "livemigrate prober: measures latency between member clusters"},
}

func componentByName(name string) (Component, bool) {
	for _, c := range Components {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// BinaryPath is where the component's binary is in its image; the
// entrypoint.
func BinaryPath(name string) string { return "/bin/" + name }

// Options of a build.
type Options struct {
	// RepoDir is the module root (cmd/<name> below it).
	RepoDir string
	// OutDir receives one OCI image layout per component: OutDir/<name>.
	OutDir string
	// Repository prefixes the image names: <Repository>/<name>:<Tag>.
	Repository string
	Tag        string
	// Created is the time of every file and of the image configuration.
	Created time.Time
	// Revision and Version are recorded in the labels.
	Revision, Version string
	// GOARCH of the binaries and the image.
	GOARCH string
	// CacheDir keeps the downloaded Debian packages.
	CacheDir string
	// Binaries, when set for a component, is a prebuilt binary to use
	// instead of building cmd/<name>.
	Binaries map[string]string
	Log      io.Writer
}

// Result of one component's build.
type Result struct {
	Component string
	// Reference is <Repository>/<name>:<Tag>.
	Reference string
	Layout    string
	Image     v1.Image
	Digest    v1.Hash
}

func (o *Options) ref(name string) string {
	return strings.TrimSuffix(o.Repository, "/") + "/" + name + ":" + o.Tag
}

// baseFiles are the files of every image: users and groups (root, nonroot
// 65532, nobody), nsswitch.conf, the CA bundle, /tmp, home directories.
func baseFiles(caBundle, caCopyright []byte) (*fileSet, error) {
	fs := newFileSet()
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		fmt.Sprintf("nobody:x:%d:%d:nobody:/nonexistent:/sbin/nologin\n", nobodyUID, nobodyUID) +
		fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonrootUID, nonrootUID)
	group := "root:x:0:\n" +
		fmt.Sprintf("nobody:x:%d:\n", nobodyUID) +
		fmt.Sprintf("nonroot:x:%d:\n", nonrootUID)
	for _, err := range []error{
		fs.dir("etc", 0o755, 0, 0),
		fs.file("etc/passwd", 0o644, 0, 0, []byte(passwd)),
		fs.file("etc/group", 0o644, 0, 0, []byte(group)),
		fs.file("etc/nsswitch.conf", 0o644, 0, 0, []byte("passwd: files\ngroup: files\nhosts: files dns\n")),
		fs.file("etc/ssl/certs/ca-certificates.crt", 0o644, 0, 0, caBundle),
		fs.file("usr/share/doc/ca-certificates/copyright", 0o644, 0, 0, caCopyright),
		fs.dir("tmp", 0o1777, 0, 0),
		fs.dir("root", 0o700, 0, 0),
		fs.dir("home/nonroot", 0o700, nonrootUID, nonrootUID),
		fs.dir("bin", 0o755, 0, 0),
	} {
		if err != nil {
			return nil, err
		}
	}
	return fs, nil
}

// debianFiles is the content of pkgs (documentation dropped) plus their
// control stanzas under var/lib/dpkg/status.d, where image scanners look
// for the packages of distroless-style images.
func debianFiles(ctx context.Context, pkgs []*debPackage) (*fileSet, error) {
	fs := newFileSet()
	for _, p := range pkgs {
		c, err := p.contents(ctx, keepRuntime)
		if err != nil {
			return nil, err
		}
		if err := fs.merge(c); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if err := fs.file("var/lib/dpkg/status.d/"+p.Name, 0o644, 0, 0, p.Control); err != nil {
			return nil, err
		}
	}
	return fs, nil
}

func layerOf(fs *fileSet, mtime time.Time) (v1.Layer, error) {
	b, err := fs.tar(mtime)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// Build builds the named components.
func Build(ctx context.Context, o Options, names []string) ([]Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	arch, err := debArch(o.GOARCH)
	if err != nil {
		return nil, err
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: the images are made of Debian packages fetched with apt (a Debian or Ubuntu machine; build/Dockerfile is the alternative with Docker)", tool)
		}
	}
	a := &apt{Arch: arch, CacheDir: o.CacheDir, Log: o.Log}

	var comps []Component
	for _, n := range names {
		c, ok := componentByName(n)
		if !ok {
			return nil, fmt.Errorf("unknown component %q", n)
		}
		comps = append(comps, c)
	}

	// The CA bundle of every image comes from Debian's ca-certificates.
	caPkgs, err := a.resolveOne(ctx, "ca-certificates")
	if err != nil {
		return nil, err
	}
	bundle, copyright, err := caBundle(ctx, caPkgs)
	if err != nil {
		return nil, err
	}
	base, err := baseFiles(bundle, copyright)
	if err != nil {
		return nil, err
	}
	if err := base.file("var/lib/dpkg/status.d/ca-certificates", 0o644, 0, 0, caPkgs.Control); err != nil {
		return nil, err
	}

	tmp, err := os.MkdirTemp("", "livemigrate-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	var results []Result
	for _, c := range comps {
		fmt.Fprintf(o.Log, "building %s\n", o.ref(c.Name))
		bin := o.Binaries[c.Name]
		if bin == "" {
			bin = filepath.Join(tmp, c.Name)
			if err := goBuild(ctx, o.RepoDir, c.Name, o.GOARCH, bin); err != nil {
				return nil, err
			}
		}
		binData, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		rootfs := newFileSet()
		if err := rootfs.merge(base); err != nil {
			return nil, err
		}
		pkgs := []*debPackage{caPkgs}
		if len(c.Debian) > 0 {
			deps, err := a.resolve(ctx, c.Debian)
			if err != nil {
				return nil, fmt.Errorf("%s: resolving Debian packages: %w", c.Name, err)
			}
			if err := checkMinVersions(ctx, deps, c.MinVersions); err != nil {
				return nil, fmt.Errorf("%s: %w", c.Name, err)
			}
			if err := a.download(ctx, deps); err != nil {
				return nil, fmt.Errorf("%s: %w", c.Name, err)
			}
			deb, err := debianFiles(ctx, deps)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.Name, err)
			}
			if err := rootfs.merge(deb); err != nil {
				return nil, fmt.Errorf("%s: %w", c.Name, err)
			}
			pkgs = append(pkgs, deps...)
		}
		app := newFileSet()
		if err := app.file(BinaryPath(c.Name), 0o755, 0, 0, binData); err != nil {
			return nil, err
		}
		img, err := o.image(c, rootfs, app, pkgs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		dir := filepath.Join(o.OutDir, c.Name)
		if err := writeLayout(dir, img, o.Tag); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "%s %s %s\n", o.ref(c.Name), d, dir)
		results = append(results, Result{Component: c.Name, Reference: o.ref(c.Name), Layout: dir, Image: img, Digest: d})
	}
	return results, nil
}

// resolveOne downloads one package (without dependencies).
func (a *apt) resolveOne(ctx context.Context, name string) (*debPackage, error) {
	p, err := a.show(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%w (is apt's index current? run apt-get update)", err)
	}
	if err := a.download(ctx, []*debPackage{p}); err != nil {
		return nil, err
	}
	return p, nil
}

func (o *Options) image(c Component, rootfs, app *fileSet, pkgs []*debPackage) (v1.Image, error) {
	baseLayer, err := layerOf(rootfs, o.Created)
	if err != nil {
		return nil, err
	}
	appLayer, err := layerOf(app, o.Created)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		names = append(names, p.String())
	}
	sort.Strings(names)
	created := v1.Time{Time: o.Created.UTC()}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: baseLayer, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "hack/images: base files and Debian packages " + strings.Join(names, " ")}},
		mutate.Addendum{Layer: appLayer, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "hack/images: CGO_ENABLED=0 go build -trimpath -buildvcs=false ./cmd/" + c.Name}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS = "linux"
	cf.Architecture = o.GOARCH
	labels := map[string]string{
		"org.opencontainers.image.title":         c.Name,
		"org.opencontainers.image.description":   c.Description,
		"org.opencontainers.image.source":        "https://github.com/livemigrate/livemigrate",
		"org.opencontainers.image.documentation": "https://github.com/livemigrate/livemigrate/blob/main/docs/images.md",
		"org.opencontainers.image.created":       created.Format(time.RFC3339),
		"org.opencontainers.image.ref.name":      o.ref(c.Name),
		DebianPackagesLabel:                      strings.Join(names, " "),
	}
	if o.Revision != "" {
		labels["org.opencontainers.image.revision"] = o.Revision
	}
	if o.Version != "" {
		labels["org.opencontainers.image.version"] = o.Version
	}
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath(c.Name)},
		User:       fmt.Sprintf("%d:%d", nonrootUID, nonrootUID),
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	ann := map[string]string{}
	for k, v := range labels {
		ann[k] = v
	}
	img, ok := mutate.Annotations(img, ann).(v1.Image)
	if !ok {
		return nil, fmt.Errorf("annotating the manifest")
	}
	return img, nil
}

// writeLayout writes img as the only image of a fresh OCI image layout at
// dir, tagged (org.opencontainers.image.ref.name) with tag.
func writeLayout(dir string, img v1.Image, tag string) error {
	if _, err := os.Stat(dir); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("%s exists and is not an OCI image layout; not overwriting it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
}

// goBuild builds cmd/<name> statically into out. -buildvcs=false: the
// binary depends on the sources only, not on the state of the git checkout
// (the image labels record the revision).
func goBuild(ctx context.Context, repoDir, name, goarch, out string) error {
	cmd := execGo(ctx, repoDir, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, "./cmd/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
