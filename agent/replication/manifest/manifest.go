// Package manifest describes the identity of every entry of a directory
// tree — type, device, inode, size, modification and change times — without
// reading any content. The source agent compares manifests of the source
// and of the target (taken by the receiver) to tell which entries cannot
// have changed since a checksum verification found them equal: any write,
// truncation, chmod, chown, rename onto, link or utimes of an entry changes
// its ctime, which no user-space call can set back (see package engine,
// Session.PreVerify, for how and when that is relied on).
package manifest

import (
	"encoding/gob"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livemigrate/livemigrate/agent/replication/internal/fswalk"
)

// Identity of one entry.
type Identity struct {
	// Mode is the type and permission bits (st_mode).
	Mode     uint32
	Dev, Ino uint64
	Size     int64
	MtimeNs  int64
	CtimeNs  int64
}

// Regular reports whether the entry is a regular file.
func (i Identity) Regular() bool { return i.Mode&unix.S_IFMT == unix.S_IFREG }

// Manifest of a tree.
type Manifest struct {
	// Taken is the walking node's clock when the walk started; ctimes are
	// compared against it, never against another node's clock.
	Taken time.Time
	// Entries by slash-separated path relative to the tree ("." is the
	// tree itself).
	Entries map[string]Identity
}

// Walk describes every entry under dir without following symlinks. Entries
// vanishing during the walk are left out.
func Walk(dir string) (Manifest, error) {
	m := Manifest{Taken: time.Now(), Entries: map[string]Identity{}}
	err := fswalk.Walk(dir, func(rel string, st *unix.Stat_t) error {
		m.Entries[rel] = Identity{
			Mode: st.Mode, Dev: st.Dev, Ino: st.Ino, Size: st.Size,
			MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(),
		}
		return nil
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("walking %s: %w", dir, err)
	}
	return m, nil
}

// Encode writes m to w.
func (m Manifest) Encode(w io.Writer) error {
	return gob.NewEncoder(w).Encode(m)
}

// Decode reads a manifest written by Encode, at most maxBytes of it.
func Decode(r io.Reader, maxBytes int64) (Manifest, error) {
	var m Manifest
	lr := &io.LimitedReader{R: r, N: maxBytes}
	if err := gob.NewDecoder(lr).Decode(&m); err != nil {
		if lr.N <= 0 {
			return Manifest{}, fmt.Errorf("manifest larger than %d bytes", maxBytes)
		}
		return Manifest{}, fmt.Errorf("decoding manifest: %w", err)
	}
	return m, nil
}
