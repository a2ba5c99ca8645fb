// Package fswalk walks a volume's tree the way replication needs it: every
// entry lstat'ed (symlinks are never followed), paths relative to the tree,
// and entries that vanish during the walk (the application still runs)
// skipped rather than failing the walk.
//
// The walk never resolves a path below the tree's root: every entry is
// looked up relative to its parent directory held open, and a directory is
// entered only when the one opened (O_NOFOLLOW) is the inode just listed.
// A directory the workload swaps for a symlink while the walk runs (to the
// node's /var/lib/kubelet, another pod's volume) therefore lists nothing
// outside the volume: the walk sees the symlink, or the new directory it
// was swapped for, never what a symlink points to.
package fswalk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// Walk calls fn for dir itself (rel ".") and every entry below it, in
// lexical order (a directory before its content), with the entry's
// slash-separated path relative to dir and its lstat. An entry that
// disappears or changes type between being listed and being looked at is
// skipped; dir itself must exist. An error from fn stops the walk and is
// returned.
func Walk(dir string, fn func(rel string, st *unix.Stat_t) error) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "fstat", Path: dir, Err: err}
	}
	if err := fn(".", &st); err != nil {
		return err
	}
	return walk(d, ".", fn)
}

// walk calls fn for the content of the open directory d (rel), recursively.
func walk(d *os.File, rel string, fn func(rel string, st *unix.Stat_t) error) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while listed
		}
		return fmt.Errorf("listing %s: %w", rel, err)
	}
	sort.Strings(names)
	fd := int(d.Fd())
	for _, name := range names {
		r := name
		if rel != "." {
			r = rel + "/" + name
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("%s: %w", r, err)
		}
		if err := fn(r, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				continue // gone, or no longer a directory
			}
			return fmt.Errorf("opening %s: %w", r, err)
		}
		child := os.NewFile(uintptr(cfd), r)
		var cst unix.Stat_t
		if err := unix.Fstat(cfd, &cst); err != nil {
			_ = child.Close()
			return fmt.Errorf("%s: %w", r, err)
		}
		if cst.Dev != st.Dev || cst.Ino != st.Ino {
			_ = child.Close()
			continue // replaced since it was looked at
		}
		err = walk(child, r, fn)
		_ = child.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
