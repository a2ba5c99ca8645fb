// Package fswalk walks a volume's tree the way replication needs it: every
// entry lstat'ed (symlinks are never followed), paths relative to the tree,
// and entries that vanish during the walk (the application still runs)
// skipped rather than failing the walk.
package fswalk

import (
	"errors"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Walk calls fn for dir itself (rel ".") and every entry below it, in
// lexical order, with the entry's slash-separated path relative to dir and
// its lstat. An entry that disappears between being listed and being
// lstat'ed is skipped; dir itself must exist. An error from fn stops the
// walk and is returned.
func Walk(dir string, fn func(rel string, st *unix.Stat_t) error) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		return fn(filepath.ToSlash(rel), &st)
	})
}
