package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
)

// fileSet is the content of one layer, keyed by clean relative path
// ("usr/bin/rsync"). It is written as a tar stream with sorted entries,
// one fixed modification time and no user or group names, so that the same
// content always gives the same bytes (and the same layer digest).
type fileSet struct {
	entries map[string]*fileEntry
}

type fileEntry struct {
	typ      byte // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode     int64
	uid, gid int
	linkname string
	data     []byte
}

func newFileSet() *fileSet { return &fileSet{entries: map[string]*fileEntry{}} }

func cleanPath(p string) (string, error) {
	c := path.Clean("/" + p)
	if c == "/" {
		return "", nil
	}
	c = strings.TrimPrefix(c, "/")
	if strings.HasPrefix(c, "../") || c == ".." {
		return "", fmt.Errorf("path %q leaves the root", p)
	}
	return c, nil
}

func (fs *fileSet) put(p string, e *fileEntry) error {
	c, err := cleanPath(p)
	if err != nil {
		return err
	}
	if c == "" {
		return nil // the root directory itself is implicit
	}
	if old, ok := fs.entries[c]; ok {
		switch {
		case old.typ == tar.TypeDir && e.typ == tar.TypeDir:
			return nil // directories shared by several packages
		case old.typ == tar.TypeDir || e.typ == tar.TypeDir:
			return fmt.Errorf("%s: a directory and a non-directory at the same path", c)
		}
	}
	fs.entries[c] = e
	return nil
}

func (fs *fileSet) dir(p string, mode int64, uid, gid int) error {
	return fs.put(p, &fileEntry{typ: tar.TypeDir, mode: mode, uid: uid, gid: gid})
}

func (fs *fileSet) file(p string, mode int64, uid, gid int, data []byte) error {
	return fs.put(p, &fileEntry{typ: tar.TypeReg, mode: mode, uid: uid, gid: gid, data: data})
}

func (fs *fileSet) symlink(p, target string) error {
	return fs.put(p, &fileEntry{typ: tar.TypeSymlink, mode: 0o777, linkname: target})
}

// addTar adds the entries of a tar stream (a Debian package's data.tar)
// for which keep returns true. Hard links become copies of their target, so
// that the sorted output never names a link before its target.
func (fs *fileSet) addTar(r io.Reader, keep func(string) bool) error {
	tr := tar.NewReader(r)
	regular := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name, err := cleanPath(h.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		mode := h.Mode & 0o7777
		switch h.Typeflag {
		case tar.TypeDir:
			if !keep(name) {
				continue
			}
			if err := fs.dir(name, mode, h.Uid, h.Gid); err != nil {
				return err
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			regular[name] = data
			if !keep(name) {
				continue
			}
			if err := fs.file(name, mode, h.Uid, h.Gid, data); err != nil {
				return err
			}
		case tar.TypeLink:
			target, err := cleanPath(h.Linkname)
			if err != nil {
				return err
			}
			data, ok := regular[target]
			if !ok {
				return fmt.Errorf("%s: hard link to %s, which is not an earlier regular file", name, h.Linkname)
			}
			regular[name] = data
			if !keep(name) {
				continue
			}
			if err := fs.file(name, mode, h.Uid, h.Gid, data); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if !keep(name) {
				continue
			}
			if err := fs.symlink(name, h.Linkname); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported tar entry type %q", name, h.Typeflag)
		}
	}
}

// merge adds every entry of other.
func (fs *fileSet) merge(other *fileSet) error {
	for p, e := range other.entries {
		if err := fs.put(p, e); err != nil {
			return err
		}
	}
	return nil
}

// tar writes the set as an uncompressed tar stream: parent directories
// added where missing (0755, root), entries sorted by path, every time set
// to mtime.
func (fs *fileSet) tar(mtime time.Time) ([]byte, error) {
	for p := range fs.entries {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := fs.entries[d]; !ok {
				fs.entries[d] = &fileEntry{typ: tar.TypeDir, mode: 0o755}
			}
		}
	}
	paths := make([]string, 0, len(fs.entries))
	for p := range fs.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime = mtime.UTC().Truncate(time.Second)
	for _, p := range paths {
		e := fs.entries[p]
		h := &tar.Header{
			Typeflag: e.typ,
			Name:     p,
			Linkname: e.linkname,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  mtime,
			Format:   tar.FormatPAX,
		}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
