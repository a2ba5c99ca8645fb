package labnode

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// labAppEntrypoint is where the lab app binary lies in its image.
const labAppEntrypoint = "/usr/local/bin/labapp"

// LabAppImage builds the lab app's OCI image with go-containerregistry: one
// layer holding the labapp binary and the shared libraries it links
// against (as ldd lists them), nothing else.
func LabAppImage(labapp string) (v1.Image, error) {
	files := map[string]string{labAppEntrypoint: labapp}
	libs, err := sharedLibraries(labapp)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		files[l] = l
	}
	var buf bytes.Buffer
	if err := writeImageLayer(&buf, files); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
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
	cf.Config.Entrypoint = []string{labAppEntrypoint}
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	return mutate.ConfigFile(img, cf)
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)`)

// sharedLibraries lists the absolute paths of the libraries a binary loads
// (its interpreter included); none for a static binary.
func sharedLibraries(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, out)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		if m := lddLine.FindStringSubmatch(line); m != nil {
			libs = append(libs, m[1])
		}
	}
	return libs, nil
}

// writeImageLayer writes a layer tar: every file (image path → host path)
// with its parent directories.
func writeImageLayer(w io.Writer, files map[string]string) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	mtime := time.Unix(0, 0)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rel := strings.TrimPrefix(path.Clean(n), "/")
		var parents []string
		for d := path.Dir(rel); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
				return err
			}
		}
		f, err := os.Open(files[n])
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), ModTime: mtime}); err != nil {
			f.Close()
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// extractTar unpacks a tar stream below dir: regular files, directories and
// symbolic links only, no member outside dir, and nothing written through a
// symbolic link (a rootfs-diff.tar comes from an untrusted archive).
func extractTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "/" {
			continue
		}
		name = strings.TrimPrefix(name, "/")
		if name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("tar member %q leaves the root", h.Name)
		}
		if base := path.Base(name); strings.HasPrefix(base, ".wh.") {
			// An OCI whiteout: the file is deleted in this layer.
			if err := insideNoLinks(dir, path.Dir(name)); err != nil {
				return err
			}
			_ = os.RemoveAll(filepath.Join(dir, path.Dir(name), strings.TrimPrefix(base, ".wh.")))
			continue
		}
		if err := insideNoLinks(dir, path.Dir(name)); err != nil {
			return err
		}
		dst := filepath.Join(dir, name)
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if fi, err := os.Lstat(dst); err == nil && !fi.IsDir() {
				if err := os.Remove(dst); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(dst, mode); err != nil {
				return err
			}
			if err := os.Chmod(dst, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			_ = os.Remove(dst)
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			_ = os.Chtimes(dst, h.ModTime, h.ModTime)
		case tar.TypeSymlink:
			_ = os.Remove(dst)
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tar member %q: unsupported type %q", h.Name, h.Typeflag)
		}
	}
}

// insideNoLinks checks that rel below dir has no symbolic link on its way
// and creates the directories that are missing.
func insideNoLinks(dir, rel string) error {
	cur := dir
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." {
			continue
		}
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		switch {
		case os.IsNotExist(err):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link", cur)
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory", cur)
		}
	}
	return nil
}
