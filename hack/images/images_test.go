package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"debug/elf"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"

	"github.com/livemigrate/livemigrate/agent/replication/rsync"
	"github.com/livemigrate/livemigrate/test/chart"
)

const agent = "livemigrate-agent"

// testOptions are the build options of the tests; Debian packages are
// cached across runs under the user's cache directory.
func testOptions(t *testing.T, out string) Options {
	t.Helper()
	cache, err := defaultCacheDir()
	if err != nil {
		cache = filepath.Join(t.TempDir(), "debs")
	}
	return Options{
		RepoDir:    repoRoot(t),
		OutDir:     out,
		Repository: "ghcr.io/livemigrate",
		Tag:        "test",
		Created:    time.Unix(1700000000, 0),
		Revision:   "0123456789abcdef0123456789abcdef01234567",
		Version:    "v0.0.0-test",
		GOARCH:     runtime.GOARCH,
		CacheDir:   cache,
		Log:        testWriter{t},
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", d, err)
	}
	return d
}

// build runs Build and fails the test with the builder's error (an
// unreachable Debian archive included: that is a failure, not a skip).
func build(t *testing.T, o Options, names ...string) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Build(ctx, o, names)
	if err != nil {
		t.Fatalf("building %v: %v", names, err)
	}
	if len(res) != len(names) {
		t.Fatalf("built %d images, want %d", len(res), len(names))
	}
	return res
}

// TestAgentImage builds the agent image from a real build of
// cmd/livemigrate-agent, checks that rebuilding gives the same digest, and
// runs the image's root filesystem: rsync, its libraries, the remote shell
// the sender uses, a daemon-mode transfer with the receiver's
// configuration, and the agent binary.
func TestAgentImage(t *testing.T) {
	start := time.Now()
	tmp := t.TempDir()
	// A cold build cache compiles the agent and its dependencies (about
	// three CPU minutes); warm, it is a link.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// Two builds of the binary, as two runs of the builder would do. With
	// -trimpath they are byte for byte the same for the same sources.
	bins := [2]string{filepath.Join(tmp, "bin1", agent), filepath.Join(tmp, "bin2", agent)}
	for _, b := range bins {
		if err := goBuild(ctx, repoRoot(t), agent, runtime.GOARCH, b); err != nil {
			t.Fatal(err)
		}
	}
	b1, err := os.ReadFile(bins[0])
	if err != nil {
		t.Fatal(err)
	}
	b2, err := os.ReadFile(bins[1])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("two builds of cmd/%s differ (was the source tree modified while the test ran?)", agent)
	}
	t.Logf("go build x2: %v", time.Since(start).Round(time.Millisecond))

	var digests [2]v1.Hash
	var res Result
	for i := range 2 {
		o := testOptions(t, filepath.Join(tmp, fmt.Sprintf("out%d", i)))
		o.Binaries = map[string]string{agent: bins[i]}
		r := build(t, o, agent)[0]
		digests[i], res = r.Digest, r
	}
	if digests[0] != digests[1] {
		t.Fatalf("rebuilding the agent image changed its digest: %s, then %s", digests[0], digests[1])
	}
	t.Logf("image %s@%s, built twice in %v", res.Reference, res.Digest, time.Since(start).Round(time.Millisecond))

	img := imageFromLayout(t, res.Layout, "test")
	if d, err := img.Digest(); err != nil || d != res.Digest {
		t.Fatalf("image in the layout: digest %v (%v), want %s", d, err, res.Digest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cf.Config.Entrypoint, []string{"/bin/" + agent}; !equal(got, want) {
		t.Errorf("entrypoint %q, want %q", got, want)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (the restore webhook runs with runAsNonRoot and no runAsUser)", cf.Config.User)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if !cf.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("created %v, want the source date epoch", cf.Created)
	}
	pkgs := map[string]string{}
	for _, f := range strings.Fields(cf.Config.Labels[DebianPackagesLabel]) {
		n, v, _ := strings.Cut(f, "=")
		pkgs[n] = v
	}
	for _, p := range []string{"rsync", "libc6", "dash", "coreutils", "ca-certificates", "libssl3", "libacl1"} {
		if pkgs[p] == "" {
			t.Errorf("label %s = %q does not record %s", DebianPackagesLabel, cf.Config.Labels[DebianPackagesLabel], p)
		}
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.title":    agent,
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.version":  "v0.0.0-test",
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
		"org.opencontainers.image.source":   "https://github.com/livemigrate/livemigrate",
		"org.opencontainers.image.ref.name": "ghcr.io/livemigrate/livemigrate-agent:test",
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations[DebianPackagesLabel] != cf.Config.Labels[DebianPackagesLabel] {
		t.Errorf("manifest annotation %s = %q, want the label's value", DebianPackagesLabel, m.Annotations[DebianPackagesLabel])
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s, want OCI", m.MediaType)
	}

	rootfs := filepath.Join(tmp, "rootfs")
	extract(t, img, rootfs)
	for _, p := range []string{"usr/bin/rsync", "bin/sh", "bin/cat", "etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "var/lib/dpkg/status.d/rsync", "tmp"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("rootfs: %v", err)
		}
	}
	for _, p := range []string{"usr/share/man", "usr/share/doc/rsync/NEWS.md.gz"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err == nil {
			t.Errorf("rootfs has %s; documentation is dropped", p)
		}
	}
	if _, err := os.Stat(filepath.Join(rootfs, "usr/share/doc/rsync/copyright")); err != nil {
		t.Errorf("rootfs: rsync's copyright file: %v", err)
	}
	checkCommonFiles(t, rootfs)

	t.Run("chroot", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("SKIP (visible): running the image's root filesystem needs chroot, i.e. root; run the tests as root (CI does)")
		}
		// rsync's protocol: the agent needs >= 31 (SendOptions' flags).
		out := chroot(t, rootfs, "/usr/bin/rsync", "--version")
		mm := regexp.MustCompile(`protocol version (\d+)`).FindStringSubmatch(out)
		if mm == nil {
			t.Fatalf("rsync --version in the image printed no protocol version:\n%s", out)
		}
		if v, _ := strconv.Atoi(mm[1]); v < 31 {
			t.Fatalf("rsync in the image speaks protocol %d, the agent needs >= 31", v)
		}
		t.Logf("image rsync: %s", strings.SplitN(out, "\n", 2)[0])

		checkLibraries(t, rootfs)

		help := chroot(t, rootfs, "/bin/"+agent, "--help")
		for _, want := range []string{"Usage: livemigrate-agent", "--mode", "--replication-"} {
			if !strings.Contains(help, want) {
				t.Errorf("livemigrate-agent --help in the image lacks %q:\n%s", want, help)
			}
		}

		// The commands of the sender's remote shell (rsync -e "sh -c ...":
		// exec, echo, read, kill are dash builtins; cat is coreutils').
		if got := chroot(t, rootfs, "/bin/sh", "-c", "echo relay | cat; command -v kill; command -v cat"); got != "relay\nkill\n/bin/cat\n" {
			t.Errorf("sh -c in the image printed %q", got)
		}

		checkTransfer(t, rootfs)
	})
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// checkTransfer runs, inside the image, an rsync client whose remote shell
// (sh -c, as the sender's) starts a single-use daemon with the receiver's
// generated configuration (chroot into the target, write-only), with the
// sender's main options, and compares the trees.
func checkTransfer(t *testing.T, rootfs string) {
	t.Helper()
	src := filepath.Join(rootfs, "tmp/src")
	dst := filepath.Join(rootfs, "tmp/dst")
	for _, d := range []string{src + "/sub", dst} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"a.txt": "alpha\n", "sub/b.bin": strings.Repeat("livemigrate", 10000)}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(src, n), []byte(c), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "hard.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/b.bin", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(src, "sub/b.bin"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	conf := rsync.DaemonConfig("/tmp/dst", "/tmp/rsyncd.log")
	if err := os.WriteFile(filepath.Join(rootfs, "tmp/rsyncd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out := chroot(t, rootfs, "/usr/bin/rsync", "-rlptgoHAX", "--delete", "--numeric-ids", "--inplace", "--no-whole-file",
		"--modify-window=-1", "--info=stats2", "--no-h", "--blocking-io",
		"-e", "sh -c 'exec rsync --server --daemon --config=/tmp/rsyncd.conf .'",
		"/tmp/src/", "livemigrate::"+rsync.ModuleName+"/")
	if !strings.Contains(out, "Number of regular files transferred") {
		t.Errorf("rsync printed no statistics:\n%s", out)
	}
	for n, c := range files {
		b, err := os.ReadFile(filepath.Join(dst, n))
		if err != nil || string(b) != c {
			t.Errorf("%s in the target: %q, %v", n, truncate(string(b)), err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "sub/b.bin" {
		t.Errorf("symlink in the target: %q, %v", l, err)
	}
	a, err1 := os.Stat(filepath.Join(dst, "a.txt"))
	h, err2 := os.Stat(filepath.Join(dst, "hard.txt"))
	if err1 != nil || err2 != nil || !os.SameFile(a, h) {
		t.Errorf("hard link not preserved: %v %v", err1, err2)
	}
	if st, err := os.Stat(filepath.Join(dst, "sub/b.bin")); err != nil {
		t.Error(err)
	} else if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Uid != 1234 || sys.Gid != 5678 {
		t.Errorf("owner in the target: %+v, want 1234:5678 (numeric ids)", st.Sys())
	}
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// checkLibraries resolves the shared libraries of every dynamically linked
// executable under bin, sbin, usr/bin and usr/sbin with the ELF interpreter
// named in the file, inside the root filesystem (ldd without ldd).
func checkLibraries(t *testing.T, rootfs string) {
	t.Helper()
	checked := map[string]bool{}
	for _, dir := range []string{"bin", "sbin", "usr/bin", "usr/sbin"} {
		entries, err := os.ReadDir(filepath.Join(rootfs, dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !e.Type().IsRegular() {
				continue
			}
			p := "/" + path.Join(dir, e.Name())
			interp, err := elfInterpreter(filepath.Join(rootfs, p))
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			if interp == "" {
				continue // static (the agent) or not ELF (scripts)
			}
			out, err := exec.Command("chroot", rootfs, interp, "--list", p).CombinedOutput()
			if err != nil || strings.Contains(string(out), "not found") {
				t.Errorf("%s: libraries in the image: %v\n%s", p, err, out)
			}
			checked[p] = true
		}
	}
	for _, p := range []string{"/usr/bin/rsync", "/bin/dash", "/bin/cat"} {
		if !checked[p] {
			t.Errorf("%s: not a dynamically linked executable in the image", p)
		}
	}
	t.Logf("libraries resolved for %d executables", len(checked))
}

func elfInterpreter(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != elf.ELFMAG {
		return "", nil
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", err
	}
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return "", err
			}
			return strings.TrimRight(string(b), "\x00"), nil
		}
	}
	return "", nil
}

func chroot(t *testing.T, rootfs string, args ...string) string {
	t.Helper()
	cmd := exec.Command("chroot", append([]string{rootfs}, args...)...)
	// The environment the agent gives rsync.
	cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL=C"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("chroot %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// checkCommonFiles checks the files every image has: users, CA bundle.
func checkCommonFiles(t *testing.T, rootfs string) {
	t.Helper()
	passwd, err := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"root:x:0:0:", "nonroot:x:65532:65532:"} {
		if !strings.Contains(string(passwd), want) {
			t.Errorf("/etc/passwd lacks %q", want)
		}
	}
	bundle, err := os.ReadFile(filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			t.Errorf("CA bundle: certificate %d: %v", n, err)
		}
		n++
	}
	if n < 100 {
		t.Errorf("CA bundle has %d certificates, want Debian's (> 100)", n)
	}
	st, err := os.Stat(filepath.Join(rootfs, "tmp"))
	if err != nil || st.Mode()&fs.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Errorf("/tmp: %v %v, want 1777", st.Mode(), err)
	}
}

func imageFromLayout(t *testing.T, dir, tag string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("%s: %d images in the layout, want 1", dir, len(im.Manifests))
	}
	if got := im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; got != tag {
		t.Errorf("%s: ref.name %q, want %q", dir, got, tag)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// extract writes the image's flattened file system to dir (as root: with
// ownership).
func extract(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	root := os.Geteuid() == 0
	type dirMode struct {
		p    string
		mode os.FileMode
	}
	var dirs []dirMode
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name, err := cleanPath(h.Name)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(h.Mode & 0o777)
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		if h.Mode&0o4000 != 0 {
			mode |= os.ModeSetuid
		}
		if h.Mode&0o2000 != 0 {
			mode |= os.ModeSetgid
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, dirMode{p, mode})
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s: unexpected entry type %q in the image", h.Name, h.Typeflag)
		}
		if root {
			if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range dirs {
		if err := os.Chmod(d.p, d.mode); err != nil {
			t.Fatal(err)
		}
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

// TestManifestsMatchImages builds every image (with a stand-in binary: the
// agent test runs a real one) and checks every workload the Helm chart
// renders (charts/livemigrate, the one source of the manifests) against
// them: image names under ghcr.io/livemigrate, the command or entrypoint
// present in the image, and users that satisfy runAsNonRoot / the agent's
// need for root.
func TestManifestsMatchImages(t *testing.T) {
	tmp := t.TempDir()
	stub := filepath.Join(tmp, "stub")
	if err := os.WriteFile(stub, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, filepath.Join(tmp, "out"))
	o.Binaries = map[string]string{}
	for _, n := range componentNames() {
		o.Binaries[n] = stub
	}
	images := map[string]v1.Image{}
	rootfs := map[string]string{}
	for _, r := range build(t, o, componentNames()...) {
		images[r.Component] = imageFromLayout(t, r.Layout, "test")
		rootfs[r.Component] = filepath.Join(tmp, "rootfs", r.Component)
		extract(t, images[r.Component], rootfs[r.Component])
	}
	// The static images are distroless-like: no shell, no package files.
	for _, n := range []string{"livemigrate-scheduler", "livemigrate-descheduler", "livemigrate-prober"} {
		for _, p := range []string{"bin/sh", "usr/bin", "lib"} {
			if _, err := os.Lstat(filepath.Join(rootfs[n], p)); err == nil {
				t.Errorf("%s: has %s; the static images hold only the binary and base files", n, p)
			}
		}
		checkCommonFiles(t, rootfs[n])
	}

	// Every workload of the Helm chart, in each install mode that runs
	// one, with the prober on.
	seen := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, mode := range []struct{ name, namespace string }{{"host", "karmada-system"}, {"member", "livemigrate-system"}} {
		objs, err := chart.Render(ctx, repoRoot(t), mode.namespace, "installMode="+mode.name,
			"descheduler.checkpointRepository=registry.example.com/livemigrate/checkpoints", "prober.enabled=true", "prober.clusterName=member1")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, o := range objs {
			if o.GetKind() != "Deployment" && o.GetKind() != "DaemonSet" {
				continue
			}
			spec, err := chart.PodSpec(o)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range spec.Containers {
				where := fmt.Sprintf("%s (installMode=%s): %s/%s container %s", chart.Dir, mode.name, o.GetKind(), o.GetName(), c.Name)
				n++
				ref, err := name.ParseReference(c.Image)
				if err != nil {
					t.Errorf("%s: image %q: %v", where, c.Image, err)
					continue
				}
				repo := ref.Context().Name()
				comp := path.Base(repo)
				if repo != "ghcr.io/livemigrate/"+comp || images[comp] == nil {
					t.Errorf("%s: image %q is not ghcr.io/livemigrate/<component> of a built component", where, c.Image)
					continue
				}
				seen[comp] = true
				checkContainer(t, where, *spec, c, images[comp], rootfs[comp])
			}
		}
		if n == 0 {
			t.Errorf("installMode=%s: no workload rendered", mode.name)
		}
	}
	for _, n := range componentNames() {
		if !seen[n] {
			t.Errorf("no manifest runs the %s image", n)
		}
	}
}

func checkContainer(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container, img v1.Image, rootfs string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	exe := cf.Config.Entrypoint
	if len(c.Command) > 0 {
		exe = c.Command
	}
	if len(exe) == 0 {
		t.Errorf("%s: nothing to run (no command, no entrypoint)", where)
	} else if st, err := os.Stat(filepath.Join(rootfs, exe[0])); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("%s: runs %s, not an executable in the image (%v)", where, exe[0], err)
	}

	var runAsUser *int64
	runAsNonRoot := false
	privileged := false
	if sc := pod.SecurityContext; sc != nil {
		runAsUser = sc.RunAsUser
		if sc.RunAsNonRoot != nil {
			runAsNonRoot = *sc.RunAsNonRoot
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			runAsUser = sc.RunAsUser
		}
		if sc.RunAsNonRoot != nil {
			runAsNonRoot = *sc.RunAsNonRoot
		}
		if sc.Privileged != nil {
			privileged = *sc.Privileged
		}
	}
	uid := int64(-1)
	if runAsUser != nil {
		uid = *runAsUser
	} else {
		// The kubelet accepts runAsNonRoot only with a numeric image user.
		u, _, _ := strings.Cut(cf.Config.User, ":")
		if v, err := strconv.ParseInt(u, 10, 64); err == nil {
			uid = v
		}
	}
	if runAsNonRoot && uid <= 0 {
		t.Errorf("%s: runAsNonRoot, but it would run as %q (image user %q)", where, strconv.FormatInt(uid, 10), cf.Config.User)
	}
	if privileged && uid != 0 {
		t.Errorf("%s: the privileged node agent must run as uid 0 (the rsync receiver chroots), runs as %d", where, uid)
	}
}

// TestPush pushes a built image to an in-process registry and pulls it back.
func TestPush(t *testing.T) {
	tmp := t.TempDir()
	stub := filepath.Join(tmp, "stub")
	if err := os.WriteFile(stub, []byte("stub\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, filepath.Join(tmp, "out"))
	o.Binaries = map[string]string{"livemigrate-prober": stub}
	res := build(t, o, "livemigrate-prober")
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := pushAll(context.Background(), res, u.Host+"/mirror/", "v1", true); err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(u.Host+"/mirror/livemigrate-prober:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != res[0].Digest {
		t.Fatalf("pulled %s, pushed %s", d, res[0].Digest)
	}
}

// TestFileSetDeterministic: the same entries added in another order give
// the same tar bytes, with missing parents added and times fixed.
func TestFileSetDeterministic(t *testing.T) {
	mk := func(order []int) []byte {
		fs := newFileSet()
		adds := []func() error{
			func() error { return fs.file("usr/bin/x", 0o755, 0, 0, []byte("x")) },
			func() error { return fs.symlink("bin/sh", "dash") },
			func() error { return fs.dir("tmp", 0o1777, 0, 0) },
			func() error { return fs.file("etc/a", 0o644, 1, 2, []byte("a")) },
		}
		for _, i := range order {
			if err := adds[i](); err != nil {
				t.Fatal(err)
			}
		}
		b, err := fs.tar(time.Unix(42, 0))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := mk([]int{0, 1, 2, 3}), mk([]int{3, 2, 1, 0})
	if !bytes.Equal(a, b) {
		t.Fatal("insertion order changed the tar stream")
	}
	tr := tar.NewReader(bytes.NewReader(a))
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(time.Unix(42, 0)) || h.Uname != "" {
			t.Errorf("%s: time %v, user name %q", h.Name, h.ModTime, h.Uname)
		}
		names = append(names, h.Name)
	}
	want := []string{"bin/", "bin/sh", "etc/", "etc/a", "tmp/", "usr/", "usr/bin/", "usr/bin/x"}
	if !equal(names, want) {
		t.Fatalf("entries %q, want %q", names, want)
	}
}

// A package older than its component's minimum refuses the build, saying
// which version the apt sources offer and where a newer one comes from.
func TestCheckMinVersions(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("dpkg is not installed: the image builder needs it (dpkg-deb)")
	}
	mins := map[string]string{"rsync": "3.4.0"}
	for _, tc := range []struct {
		version, err string
	}{
		{"3.5.0+ds1-0+deb12u1", ""},
		{"3.4.0-1", ""},
		{"3.4.0", ""},
		{"3.2.7-1+deb12u6", "the apt sources offer rsync 3.2.7-1+deb12u6, older than 3.4.0: add the Debian security suite (bookworm-security)"},
		{"3.4.0~rc1-1", "older than 3.4.0"},
	} {
		err := checkMinVersions(context.Background(), []*debPackage{{Name: "dash", Version: "0.5.12-2"}, {Name: "rsync", Version: tc.version}}, mins)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("rsync %s: error %v, want %q", tc.version, err, tc.err)
		}
	}
}
