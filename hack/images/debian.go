package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// debPackage is one Debian package as the configured apt sources offer it
// (the candidate version), downloaded into the cache.
type debPackage struct {
	Name, Version, Arch string
	// SHA256 of the .deb, from the apt index.
	SHA256 string
	// File is the downloaded .deb in the cache directory.
	File string
	// Depends and PreDepends, unparsed.
	Depends, PreDepends string
	// Control is the package's control stanza (dpkg-deb -f), recorded in
	// the image under var/lib/dpkg/status.d for image scanners.
	Control []byte
}

func (p *debPackage) String() string { return p.Name + "=" + p.Version }

// notInImage are dependencies that are only needed by maintainer scripts or
// init-system integration, neither of which ever runs in an image: the
// resolver does not follow them.
var notInImage = map[string]string{
	"init-system-helpers": "rsync's init script and systemd unit integration",
	"lsb-base":            "init scripts",
	"debianutils":         "dash's maintainer scripts (add-shell)",
	"dpkg":                "maintainer scripts",
	"debconf":             "maintainer scripts",
	"perl-base":           "maintainer scripts",
}

// apt wraps apt-cache and apt-get download, with the downloaded packages
// kept in a cache directory (verified by SHA256 against the apt index on
// every use).
type apt struct {
	// Arch is the Debian architecture (dpkg --print-architecture).
	Arch string
	// CacheDir holds the downloaded .deb files.
	CacheDir string
	// Log receives progress messages.
	Log io.Writer
}

func run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// debArch maps GOARCH to the Debian architecture name.
func debArch(goarch string) (string, error) {
	m := map[string]string{"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}
	a, ok := m[goarch]
	if !ok {
		return "", fmt.Errorf("no Debian architecture for GOARCH=%s", goarch)
	}
	return a, nil
}

// show returns the candidate version of a package from apt's index.
func (a *apt) show(ctx context.Context, name string) (*debPackage, error) {
	m, err := a.showMany(ctx, []string{name})
	if err != nil {
		return nil, err
	}
	return m[name], nil
}

// showMany returns the candidate versions of packages, by name, from one
// apt-cache call (each call reads the whole index, about half a second).
func (a *apt) showMany(ctx context.Context, names []string) (map[string]*debPackage, error) {
	args := []string{"show", "--no-all-versions"}
	for _, n := range names {
		if !strings.Contains(n, ":") {
			n += ":" + a.Arch
		}
		args = append(args, n)
	}
	out, err := run(ctx, "", "apt-cache", args...)
	if err != nil {
		return nil, err
	}
	pkgs := map[string]*debPackage{}
	for _, stanza := range bytes.Split(out, []byte("\n\n")) {
		fields := parseStanza(stanza)
		p := &debPackage{
			Name:       fields["Package"],
			Version:    fields["Version"],
			Arch:       fields["Architecture"],
			SHA256:     fields["SHA256"],
			Depends:    fields["Depends"],
			PreDepends: fields["Pre-Depends"],
		}
		if p.Name == "" {
			continue
		}
		if fields["Filename"] == "" || p.SHA256 == "" {
			return nil, fmt.Errorf("apt-cache knows %s only as installed, not from an archive: run apt-get update", p.Name)
		}
		pkgs[p.Name] = p
	}
	for _, n := range names {
		if p := pkgs[n]; p == nil || p.Version == "" {
			return nil, fmt.Errorf("apt-cache show %s: no package stanza", n)
		}
	}
	return pkgs, nil
}

// parseStanza parses the first stanza of Debian control data.
func parseStanza(b []byte) map[string]string {
	fields := map[string]string{}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last != "" {
				fields[last] += "\n" + line
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	return fields
}

// depNames parses a Depends field into groups of alternatives (names only:
// candidate versions of one suite satisfy each other's constraints, and
// the image build takes the candidates).
func depNames(field string) [][]string {
	var groups [][]string
	for _, group := range strings.Split(field, ",") {
		var alts []string
		for _, alt := range strings.Split(group, "|") {
			alt = strings.TrimSpace(alt)
			if i := strings.IndexAny(alt, " (["); i >= 0 {
				alt = alt[:i]
			}
			if alt != "" {
				alts = append(alts, alt)
			}
		}
		if len(alts) > 0 {
			groups = append(groups, alts)
		}
	}
	return groups
}

// resolve returns roots and their Depends/Pre-Depends closure (minus
// notInImage), sorted by name. Of alternatives, the first that apt knows
// is taken.
func (a *apt) resolve(ctx context.Context, roots []string) ([]*debPackage, error) {
	seen := map[string]*debPackage{}
	level := roots
	for len(level) > 0 {
		var names []string
		for _, n := range level {
			n = strings.TrimSuffix(n, ":any")
			if _, ok := seen[n]; ok {
				continue
			}
			if _, skip := notInImage[n]; skip {
				continue
			}
			seen[n] = nil
			names = append(names, n)
		}
		if len(names) == 0 {
			break
		}
		pkgs, err := a.showMany(ctx, names)
		if err != nil {
			return nil, err
		}
		level = nil
		for _, n := range names {
			p := pkgs[n]
			seen[n] = p
			for _, field := range []string{p.PreDepends, p.Depends} {
				for _, alts := range depNames(field) {
					chosen, err := a.choose(ctx, alts, seen)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", p.Name, err)
					}
					level = append(level, chosen)
				}
			}
		}
	}
	pkgs := make([]*debPackage, 0, len(seen))
	for _, p := range seen {
		pkgs = append(pkgs, p)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs, nil
}

// choose picks the first of alternative dependencies that is already
// chosen, excluded, or known to apt.
func (a *apt) choose(ctx context.Context, alts []string, seen map[string]*debPackage) (string, error) {
	if len(alts) == 1 {
		return alts[0], nil
	}
	for _, alt := range alts {
		alt = strings.TrimSuffix(alt, ":any")
		if _, ok := seen[alt]; ok {
			return alt, nil
		}
		if _, skip := notInImage[alt]; skip {
			return alt, nil
		}
	}
	for _, alt := range alts {
		alt = strings.TrimSuffix(alt, ":any")
		if _, err := a.show(ctx, alt); err == nil {
			return alt, nil
		}
	}
	return "", fmt.Errorf("depends on %s: none of them is known to apt", strings.Join(alts, " | "))
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// download makes sure every package is in the cache (apt-get download of
// the exact versions that are missing) and sets File and Control.
func (a *apt) download(ctx context.Context, pkgs []*debPackage) error {
	if err := os.MkdirAll(a.CacheDir, 0o755); err != nil {
		return err
	}
	var missing []*debPackage
	for _, p := range pkgs {
		p.File = filepath.Join(a.CacheDir, p.SHA256+".deb")
		if sum, err := fileSHA256(p.File); err == nil && sum == p.SHA256 {
			continue
		}
		missing = append(missing, p)
	}
	if len(missing) > 0 {
		tmp, err := os.MkdirTemp(a.CacheDir, "download-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		// apt drops privileges to _apt for downloads; the temporary
		// directory must be writable by it when running as root.
		_ = os.Chmod(tmp, 0o777)
		args := []string{"download", "-q"}
		var names []string
		for _, p := range missing {
			args = append(args, p.Name+":"+p.Arch+"="+p.Version)
			names = append(names, p.String())
		}
		fmt.Fprintf(a.Log, "apt-get download %s\n", strings.Join(names, " "))
		if _, err := run(ctx, tmp, "apt-get", args...); err != nil {
			return fmt.Errorf("downloading Debian packages failed (is the Debian archive reachable, and is apt's index current? run apt-get update): %w", err)
		}
		entries, err := os.ReadDir(tmp)
		if err != nil {
			return err
		}
		bySum := map[string]string{}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".deb") {
				continue
			}
			sum, err := fileSHA256(filepath.Join(tmp, e.Name()))
			if err != nil {
				return err
			}
			bySum[sum] = filepath.Join(tmp, e.Name())
		}
		for _, p := range missing {
			f, ok := bySum[p.SHA256]
			if !ok {
				return fmt.Errorf("apt-get download of %s gave no file with the SHA256 of apt's index (%s)", p, p.SHA256)
			}
			if err := os.Rename(f, p.File); err != nil {
				return err
			}
		}
	}
	for _, p := range pkgs {
		ctl, err := run(ctx, "", "dpkg-deb", "-f", p.File)
		if err != nil {
			return err
		}
		f := parseStanza(ctl)
		if f["Package"] != p.Name || f["Version"] != p.Version {
			return fmt.Errorf("%s: the cached file is %s=%s", p, f["Package"], f["Version"])
		}
		p.Control = ctl
	}
	return nil
}

// contents returns the package's files (dpkg-deb --fsys-tarfile: ownership
// and modes exactly as packaged, no root needed) for which keep is true.
func (p *debPackage) contents(ctx context.Context, keep func(string) bool) (*fileSet, error) {
	tarball, err := run(ctx, "", "dpkg-deb", "--fsys-tarfile", p.File)
	if err != nil {
		return nil, err
	}
	fs := newFileSet()
	if err := fs.addTar(bytes.NewReader(tarball), keep); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return fs, nil
}

// keepRuntime drops documentation (except copyright files, kept for the
// licences), manual pages, translations and lintian overrides: nothing in
// the image reads them.
func keepRuntime(p string) bool {
	for _, prefix := range []string{"usr/share/man/", "usr/share/info/", "usr/share/locale/", "usr/share/lintian/", "usr/share/bug/", "usr/share/doc-base/", "usr/share/menu/"} {
		if strings.HasPrefix(p+"/", prefix) {
			return false
		}
	}
	if rest, ok := strings.CutPrefix(p, "usr/share/doc/"); ok {
		parts := strings.Split(rest, "/")
		return len(parts) == 1 || (len(parts) == 2 && parts[1] == "copyright")
	}
	return true
}

// caBundle builds /etc/ssl/certs/ca-certificates.crt from the ca-certificates
// package as its update-ca-certificates does: every certificate under
// usr/share/ca-certificates, in sorted order, concatenated.
func caBundle(ctx context.Context, p *debPackage) ([]byte, []byte, error) {
	fs, err := p.contents(ctx, func(string) bool { return true })
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for n, e := range fs.entries {
		if strings.HasPrefix(n, "usr/share/ca-certificates/") && path.Ext(n) == ".crt" && e.typ == tar.TypeReg {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("%s: no certificates under usr/share/ca-certificates", p)
	}
	sort.Strings(names)
	var bundle bytes.Buffer
	for _, n := range names {
		d := fs.entries[n].data
		bundle.Write(d)
		if len(d) > 0 && d[len(d)-1] != '\n' {
			bundle.WriteByte('\n')
		}
	}
	cp := fs.entries["usr/share/doc/ca-certificates/copyright"]
	if cp == nil {
		return nil, nil, fmt.Errorf("%s: no copyright file", p)
	}
	return bundle.Bytes(), cp.data, nil
}

// checkMinVersions fails when a package of pkgs is older than its minimum
// in mins (dpkg --compare-versions), naming the package, both versions and
// where a newer one comes from.
func checkMinVersions(ctx context.Context, pkgs []*debPackage, mins map[string]string) error {
	for _, p := range pkgs {
		least, ok := mins[p.Name]
		if !ok {
			continue
		}
		cmd := exec.CommandContext(ctx, "dpkg", "--compare-versions", p.Version, "ge", least)
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit) && exit.ExitCode() == 1:
			return fmt.Errorf("the apt sources offer %s %s, older than %s: add the Debian security suite (bookworm-security) to the apt sources and run apt-get update", p.Name, p.Version, least)
		default:
			return fmt.Errorf("dpkg --compare-versions %s ge %s: %w", p.Version, least, err)
		}
	}
	return nil
}
