// Package layout writes container checkpoint archives in the CRI-O layout:
// checkpoint/ (the process images), config.dump, spec.dump, stats-dump,
// bind.mounts and rootfs-diff.tar. The lab's node runtime writes its archives
// with it, and tests build valid and malicious archives from it. It writes
// only to the writer it is given.
package layout

import (
	"archive/tar"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/checkpoint-restore/go-criu/v7/stats"
	spec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
)

// Container describes the checkpointed container.
type Container struct {
	ID             string
	Name           string
	PodName        string
	PodNamespace   string
	PodUID         string
	Image          string
	ImageRef       string
	Runtime        string
	RuntimeVersion string
	CRIUVersion    string
	Architecture   string
	Kernel         string
	CheckpointedAt time.Time
	FrozenTime     time.Duration
	PagesWritten   uint64
}

// ArchiveName is the kubelet's name for a container's archive.
func ArchiveName(pod, namespace, container string, t time.Time) string {
	return fmt.Sprintf("checkpoint-%s_%s-%s-%s.tar", pod, namespace, container, t.UTC().Format(time.RFC3339))
}

// StatsDump encodes a CRIU stats-dump image.
func StatsDump(frozen time.Duration, pagesWritten uint64) ([]byte, error) {
	z32, z64 := uint32(0), uint64(0)
	ft := uint32(frozen / time.Microsecond)
	st := &stats.StatsEntry{Dump: &stats.DumpStatsEntry{
		FreezingTime: &z32, FrozenTime: &ft, MemdumpTime: &z32, MemwriteTime: &ft,
		PagesScanned: &pagesWritten, PagesSkippedParent: &z64, PagesWritten: &pagesWritten, PagesLazy: &z64,
	}}
	payload, err := proto.Marshal(st)
	if err != nil {
		return nil, err
	}
	out := make([]byte, stats.PayloadOffset+len(payload))
	binary.LittleEndian.PutUint32(out[stats.PrimaryMagicOffset:], stats.ImgServiceMagic)
	binary.LittleEndian.PutUint32(out[stats.SecondaryMagicOffset:], stats.StatsMagic)
	binary.LittleEndian.PutUint32(out[stats.SizeOffset:], uint32(len(payload)))
	copy(out[stats.PayloadOffset:], payload)
	return out, nil
}

// MetadataFiles returns config.dump, spec.dump, stats-dump, bind.mounts and
// an empty rootfs-diff.tar for c.
func MetadataFiles(c Container) (map[string][]byte, error) {
	cfg := metadata.ContainerConfig{
		ID: c.ID, Name: c.Name, RootfsImage: c.Image, RootfsImageRef: c.ImageRef, RootfsImageName: c.Image,
		OCIRuntime: c.Runtime, CheckpointedAt: c.CheckpointedAt,
	}
	cm, _ := json.Marshal(map[string]any{"name": c.Name, "attempt": 0})
	sp := spec.Spec{Version: spec.Version, Annotations: map[string]string{
		"io.container.manager":                      "cri-o",
		"io.kubernetes.cri-o.Metadata":              string(cm),
		"io.kubernetes.cri-o.ImageName":             c.Image,
		"io.kubernetes.container.name":              c.Name,
		"io.kubernetes.pod.name":                    c.PodName,
		"io.kubernetes.pod.namespace":               c.PodNamespace,
		"io.kubernetes.pod.uid":                     c.PodUID,
		metadata.CheckpointAnnotationRuntimeName:    c.Runtime,
		metadata.CheckpointAnnotationRuntimeVersion: c.RuntimeVersion,
		metadata.CheckpointAnnotationCriuVersion:    c.CRIUVersion,
		metadata.CheckpointAnnotationHostArch:       c.Architecture,
		metadata.CheckpointAnnotationHostKernel:     c.Kernel,
		metadata.CheckpointAnnotationEngine:         "CRI-O",
	}}
	cfgB, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	spB, err := json.Marshal(sp)
	if err != nil {
		return nil, err
	}
	st, err := StatsDump(c.FrozenTime, c.PagesWritten)
	if err != nil {
		return nil, err
	}
	// An empty tar: two zero blocks.
	emptyTar := make([]byte, 1024)
	return map[string][]byte{
		metadata.ConfigDumpFile: cfgB,
		metadata.SpecDumpFile:   spB,
		stats.StatsDump:         st,
		"bind.mounts":           []byte("[]"),
		metadata.RootFsDiffTar:  emptyTar,
	}, nil
}

// Entry is one file of the checkpoint/ directory, streamed into the archive.
type Entry struct {
	// Name below checkpoint/.
	Name string
	Size int64
	Open func() (io.ReadCloser, error)
}

// WriteEntries writes the archive for c to w with entries as checkpoint/.
func WriteEntries(w io.Writer, c Container, entries []Entry) error {
	return WriteEntriesWith(w, c, entries, nil)
}

// WriteEntriesWith is WriteEntries with more top-level files (name →
// content, e.g. dump.log), replacing metadata files of the same name.
func WriteEntriesWith(w io.Writer, c Container, entries []Entry, extra map[string][]byte) error {
	files, err := MetadataFiles(c)
	if err != nil {
		return err
	}
	for k, v := range extra {
		files[k] = v
	}
	tw := tar.NewWriter(w)
	mtime := c.CheckpointedAt
	if mtime.IsZero() {
		mtime = time.Now()
	}
	// One 1 MiB buffer for all entries: large enough that a memory image is
	// read with few system calls, small enough to stay in cache between the
	// read and the write.
	buf := make([]byte, 1<<20)
	if err := tw.WriteHeader(&tar.Header{Name: "checkpoint/", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: mtime}); err != nil {
		return err
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: "checkpoint/" + e.Name, Typeflag: tar.TypeReg, Mode: 0o600, Size: e.Size, ModTime: mtime}); err != nil {
			return err
		}
		rc, err := e.Open()
		if err != nil {
			return err
		}
		n, err := io.CopyBuffer(tw, io.LimitReader(rc, e.Size), buf)
		rc.Close()
		if err != nil {
			return fmt.Errorf("checkpoint/%s: %w", e.Name, err)
		}
		if n != e.Size {
			return fmt.Errorf("checkpoint/%s: %d of %d bytes", e.Name, n, e.Size)
		}
	}
	return writeMetadata(tw, files, mtime)
}

func writeMetadata(tw *tar.Writer, files map[string][]byte, mtime time.Time) error {
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b := files[k]
		if err := tw.WriteHeader(&tar.Header{Name: k, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(b)), ModTime: mtime}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Write writes the archive for c to w, with the files under imagesDir as
// checkpoint/ (streamed from disk).
func Write(w io.Writer, c Container, imagesDir string) error {
	var entries []Entry
	var names []string
	if imagesDir != "" {
		err := filepath.WalkDir(imagesDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				names = append(names, p)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	sort.Strings(names)
	for _, p := range names {
		rel, err := filepath.Rel(imagesDir, p)
		if err != nil {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		p := p
		entries = append(entries, Entry{Name: filepath.ToSlash(rel), Size: fi.Size(), Open: func() (io.ReadCloser, error) { return os.Open(p) }})
	}
	return WriteEntries(w, c, entries)
}
