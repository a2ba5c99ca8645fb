package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits bound what an archive may contain.
type Limits struct {
	// MaxMemberBytes bounds one member's size.
	MaxMemberBytes int64
	// MaxTotalBytes bounds the sum of members' sizes.
	MaxTotalBytes int64
	// MaxEntries bounds the number of members.
	MaxEntries int
}

// DefaultLimits allow a 64 GiB container memory image.
var DefaultLimits = Limits{MaxMemberBytes: 64 << 30, MaxTotalBytes: 96 << 30, MaxEntries: 1 << 20}

// RejectedError says why an archive was refused.
type RejectedError struct {
	Member string
	Reason string
}

func (e *RejectedError) Error() string {
	if e.Member == "" {
		return "checkpoint archive rejected: " + e.Reason
	}
	return fmt.Sprintf("checkpoint archive rejected: member %q: %s", e.Member, e.Reason)
}

// IsRejected tells whether err is a *RejectedError.
func IsRejected(err error) bool {
	var r *RejectedError
	return errors.As(err, &r)
}

// Summary is what Validate learnt from the member list.
type Summary struct {
	Entries         int
	TotalBytes      int64
	CheckpointBytes int64
	PagesBytes      int64
	Files           map[string]int64
}

// cleanMember returns the member's name relative to the archive root, or an
// error when it is absolute or escapes the root.
func cleanMember(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.HasPrefix(name, "/") || filepath.IsAbs(name) {
		return "", errors.New("absolute path")
	}
	if strings.ContainsRune(name, 0) || strings.Contains(name, "\\") {
		return "", errors.New("invalid character in name")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", errors.New("path traversal")
		}
	}
	c := path.Clean(name)
	if c == "." {
		return ".", nil
	}
	return c, nil
}

// linkInside tells whether a link at member (cleaned) pointing to target
// stays inside the tree.
func linkInside(member, target string, hard bool) bool {
	if target == "" || strings.HasPrefix(target, "/") {
		return false
	}
	var resolved string
	if hard {
		resolved = path.Clean(target)
	} else {
		resolved = path.Clean(path.Join(path.Dir(member), target))
	}
	return resolved != ".." && !strings.HasPrefix(resolved, "../")
}

// Validate walks the archive at p and checks every member against the
// limits and the rules above.
func Validate(p string, lim Limits) (*Summary, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &RejectedError{Reason: "archive is not a regular file"}
	}
	if lim.MaxTotalBytes > 0 && fi.Size() > lim.MaxTotalBytes+(lim.MaxTotalBytes/8)+(1<<20) {
		return nil, &RejectedError{Reason: fmt.Sprintf("archive of %d bytes exceeds the limit", fi.Size())}
	}
	return ValidateStream(f, lim)
}

// ValidateStream is Validate on a reader.
func ValidateStream(r io.Reader, lim Limits) (*Summary, error) {
	tr := tar.NewReader(r)
	s := &Summary{Files: map[string]int64{}}
	kinds := map[string]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &RejectedError{Reason: "corrupt tar: " + err.Error()}
		}
		s.Entries++
		if lim.MaxEntries > 0 && s.Entries > lim.MaxEntries {
			return nil, &RejectedError{Reason: fmt.Sprintf("more than %d members", lim.MaxEntries)}
		}
		name, err := cleanMember(h.Name)
		if err != nil {
			return nil, &RejectedError{Member: h.Name, Reason: err.Error()}
		}
		if prev, dup := kinds[name]; dup && (prev != tar.TypeDir || h.Typeflag != tar.TypeDir) {
			return nil, &RejectedError{Member: h.Name, Reason: "duplicate member"}
		}
		kinds[name] = h.Typeflag
		if h.Size < 0 {
			return nil, &RejectedError{Member: h.Name, Reason: "negative size"}
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if lim.MaxMemberBytes > 0 && h.Size > lim.MaxMemberBytes {
				return nil, &RejectedError{Member: h.Name, Reason: fmt.Sprintf("%d bytes exceeds the member limit", h.Size)}
			}
			s.TotalBytes += h.Size
			if lim.MaxTotalBytes > 0 && s.TotalBytes > lim.MaxTotalBytes {
				return nil, &RejectedError{Member: h.Name, Reason: "archive exceeds the total size limit"}
			}
			s.Files[name] = h.Size
			if strings.HasPrefix(name, "checkpoint/") {
				s.CheckpointBytes += h.Size
				if strings.HasPrefix(path.Base(name), "pages-") {
					s.PagesBytes += h.Size
				}
			}
		case tar.TypeDir:
		case tar.TypeSymlink:
			if !linkInside(name, h.Linkname, false) {
				return nil, &RejectedError{Member: h.Name, Reason: fmt.Sprintf("symlink to %q leaves the archive", h.Linkname)}
			}
		case tar.TypeLink:
			if _, err := cleanMember(h.Linkname); err != nil || !linkInside(name, h.Linkname, true) {
				return nil, &RejectedError{Member: h.Name, Reason: fmt.Sprintf("hard link to %q leaves the archive", h.Linkname)}
			}
			if k, ok := kinds[path.Clean(h.Linkname)]; !ok || k != tar.TypeReg {
				return nil, &RejectedError{Member: h.Name, Reason: "hard link to a member that is not an earlier regular file"}
			}
		case tar.TypeChar, tar.TypeBlock:
			return nil, &RejectedError{Member: h.Name, Reason: "device file"}
		case tar.TypeFifo:
			return nil, &RejectedError{Member: h.Name, Reason: "FIFO"}
		case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			// consumed by archive/tar; not seen here
		default:
			return nil, &RejectedError{Member: h.Name, Reason: fmt.Sprintf("unsupported member type %q", h.Typeflag)}
		}
		if h.Mode&(0o4000|0o2000) != 0 {
			return nil, &RejectedError{Member: h.Name, Reason: "setuid/setgid bit"}
		}
	}
	if s.Entries == 0 {
		return nil, &RejectedError{Reason: "empty archive"}
	}
	for _, need := range []string{"config.dump", "spec.dump"} {
		if _, ok := s.Files[need]; !ok {
			return nil, &RejectedError{Reason: "missing " + need}
		}
	}
	if kinds["checkpoint"] != tar.TypeDir && s.CheckpointBytes == 0 {
		return nil, &RejectedError{Reason: "missing checkpoint/ directory"}
	}
	return s, nil
}

// metadataFiles are the small files Inspect extracts.
var metadataFiles = map[string]int64{
	"config.dump":    1 << 20,
	"spec.dump":      4 << 20,
	"stats-dump":     1 << 20,
	"status.dump":    1 << 20,
	"network.status": 1 << 20,
	"pod.options":    1 << 20,
	"deleted.files":  4 << 20,
}

// dumpLogHead is how much of CRIU's dump.log Inspect reads: its first lines
// name the CRIU version and the kernel.
const dumpLogHead = 64 << 10

// extractMetadata copies the metadata files of a validated archive, and the
// head of dump.log, into dir.
func extractMetadata(p, dir string) error {
	if err := extractMembers(p, dir, func(name string) bool { return name == "dump.log" }, -dumpLogHead); err != nil {
		return err
	}
	return extractMembers(p, dir, func(name string) bool { _, ok := metadataFiles[name]; return ok }, 0)
}

// extractMembers copies the regular members whose cleaned names want
// accepts into dir, flat (by base name). max bounds each member: a member
// larger than a positive max is refused; of a negative max only the first
// -max bytes are copied; zero takes the bound from metadataFiles.
func extractMembers(p, dir string, want func(name string) bool, max int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name, err := cleanMember(h.Name)
		if err != nil {
			return &RejectedError{Member: h.Name, Reason: err.Error()}
		}
		if !want(name) {
			continue
		}
		limit := max
		if limit == 0 {
			limit = metadataFiles[name]
		}
		if limit > 0 && h.Size > limit {
			return &RejectedError{Member: h.Name, Reason: "metadata file too large"}
		}
		if limit < 0 {
			limit = -limit
		}
		out, err := os.OpenFile(filepath.Join(dir, path.Base(name)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, io.LimitReader(tr, limit))
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// Secure makes an archive and its directory root-only.
func Secure(p string) error {
	if err := os.Chmod(p, 0o600); err != nil {
		return fmt.Errorf("secure archive: %w", err)
	}
	if err := os.Chmod(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("secure archive directory: %w", err)
	}
	return nil
}

// Resolve maps a path the kubelet reported to the file in dir (the agent's
// view of the kubelet's checkpoint directory). Only the base name is used,
// and it must look like a checkpoint archive.
func Resolve(dir, reported string) (string, error) {
	base := path.Base(reported)
	if base == "." || base == "/" || base == ".." || !strings.HasPrefix(base, "checkpoint-") || !strings.HasSuffix(base, ".tar") {
		return "", &RejectedError{Member: reported, Reason: "not a checkpoint archive name"}
	}
	return filepath.Join(dir, base), nil
}

// Remove deletes the archive at p, which must be directly in dir.
func Remove(dir, p string) error {
	if filepath.Dir(filepath.Clean(p)) != filepath.Clean(dir) {
		return fmt.Errorf("refusing to remove %s outside %s", p, dir)
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove archive: %w", err)
	}
	return nil
}
