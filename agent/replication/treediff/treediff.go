// Package treediff compares two directory trees the way a replicated volume
// must match its source: entry types, content, permission bits, numeric
// owner, modification times, symlink targets and hard-link groups. It is used
// by tests, end-to-end checks and benchmarks; it never modifies either tree.
package treediff

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// Entry is the comparable description of one path in a tree.
type Entry struct {
	Type    fs.FileMode
	Perm    fs.FileMode
	UID     uint32
	GID     uint32
	MtimeNs int64 // not compared for directories' root or symlinks
	Size    int64
	SHA256  [32]byte
	Link    string
	// LinkGroup is the smallest path sharing the inode (hard links).
	LinkGroup string
}

// Options tune a comparison.
type Options struct {
	// IgnoreDirTimes skips directory modification times.
	IgnoreDirTimes bool
}

// Scan describes every path under root (root itself as ".").
func Scan(root string) (map[string]Entry, error) {
	out := map[string]Entry{}
	inodes := map[[2]uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		e := Entry{
			Type:    info.Mode().Type(),
			Perm:    info.Mode().Perm() | (info.Mode() & (fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)),
			UID:     st.Uid,
			GID:     st.Gid,
			MtimeNs: info.ModTime().UnixNano(),
		}
		switch {
		case info.Mode().IsRegular():
			e.Size = info.Size()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			copy(e.SHA256[:], h.Sum(nil))
			if st.Nlink > 1 {
				k := [2]uint64{st.Dev, st.Ino}
				inodes[k] = append(inodes[k], rel)
			}
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.Link = l
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, paths := range inodes {
		sort.Strings(paths)
		for _, p := range paths {
			e := out[p]
			e.LinkGroup = paths[0]
			out[p] = e
		}
	}
	return out, nil
}

// Compare lists the differences between the trees at a (want) and b (got);
// empty means equal.
func Compare(a, b string, opts Options) ([]string, error) {
	ea, err := Scan(a)
	if err != nil {
		return nil, fmt.Errorf("scanning %s: %w", a, err)
	}
	eb, err := Scan(b)
	if err != nil {
		return nil, fmt.Errorf("scanning %s: %w", b, err)
	}
	var diffs []string
	for p, want := range ea {
		got, ok := eb[p]
		if !ok {
			diffs = append(diffs, "missing: "+p)
			continue
		}
		if want.Type == fs.ModeDir && opts.IgnoreDirTimes || want.Type == fs.ModeSymlink {
			want.MtimeNs, got.MtimeNs = 0, 0
		}
		if want.Type == fs.ModeSymlink {
			want.Perm, got.Perm = 0, 0
		}
		if want != got {
			diffs = append(diffs, fmt.Sprintf("differs: %s: want %s got %s", p, describe(want), describe(got)))
		}
	}
	for p := range eb {
		if _, ok := ea[p]; !ok {
			diffs = append(diffs, "extra: "+p)
		}
	}
	sort.Strings(diffs)
	return diffs, nil
}

func describe(e Entry) string {
	return fmt.Sprintf("{type=%v perm=%v uid=%d gid=%d mtime=%d size=%d sha=%x link=%q group=%q}",
		e.Type, e.Perm, e.UID, e.GID, e.MtimeNs, e.Size, e.SHA256[:4], e.Link, e.LinkGroup)
}

// Allocated returns the bytes allocated on disk for a file (st_blocks*512).
func Allocated(path string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

// FilesEqual reports whether two files have the same content.
func FilesEqual(a, b string) (bool, error) {
	x, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}
