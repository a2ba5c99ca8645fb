package archive

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	criucore "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v7/stats"
	"google.golang.org/protobuf/proto"
)

// Spec annotation keys CRI-O writes into spec.dump.
const (
	annotationManager       = "io.container.manager"
	annotationCRIOMetadata  = "io.kubernetes.cri-o.Metadata"
	annotationCRIOImageName = "io.kubernetes.cri-o.ImageName"
	annotationPodName       = "io.kubernetes.pod.name"
	annotationPodNamespace  = "io.kubernetes.pod.namespace"
	annotationContainerName = "io.kubernetes.container.name"
)

// Info is what an archive says about the checkpoint it holds.
type Info struct {
	ContainerName  string
	PodName        string
	PodNamespace   string
	Image          string
	ImageRef       string
	Engine         string
	Runtime        string
	RuntimeVersion string
	CRIUVersion    string
	Architecture   string
	Kernel         string
	CheckpointedAt time.Time
	// SizeBytes is the archive file's size.
	SizeBytes int64
	Summary   *Summary
	// Dump statistics, when stats-dump is present.
	FrozenTime   time.Duration
	PagesWritten uint64
	// Annotations are what checkpoint images carry (org.criu.checkpoint.*).
	Annotations map[string]string
	// Processes is the number of processes in CRIU's process tree
	// (checkpoint/pstree.img), Command the root process's name; zero and
	// empty for an archive without a process tree.
	Processes int
	Command   string
}

// Inspect validates the archive at p and reads its metadata.
func Inspect(p string, lim Limits) (*Info, error) {
	sum, err := Validate(p, lim)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp("", "livemigrate-inspect-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	if err := os.Chmod(scratch, 0o700); err != nil {
		return nil, err
	}
	if err := extractMetadata(p, scratch); err != nil {
		return nil, fmt.Errorf("extract metadata: %w", err)
	}
	cfg, _, err := metadata.ReadContainerCheckpointConfigDump(scratch)
	if err != nil {
		return nil, &RejectedError{Member: metadata.ConfigDumpFile, Reason: err.Error()}
	}
	sp, _, err := metadata.ReadContainerCheckpointSpecDump(scratch)
	if err != nil {
		return nil, &RejectedError{Member: metadata.SpecDumpFile, Reason: err.Error()}
	}
	a := sp.Annotations
	info := &Info{
		ContainerName:  cfg.Name,
		Image:          cfg.RootfsImageName,
		ImageRef:       cfg.RootfsImageRef,
		Runtime:        cfg.OCIRuntime,
		CheckpointedAt: cfg.CheckpointedAt,
		SizeBytes:      fi.Size(),
		Summary:        sum,
		PodName:        a[annotationPodName],
		PodNamespace:   a[annotationPodNamespace],
		Engine:         a[metadata.CheckpointAnnotationEngine],
		RuntimeVersion: a[metadata.CheckpointAnnotationRuntimeVersion],
		CRIUVersion:    a[metadata.CheckpointAnnotationCriuVersion],
		Architecture:   a[metadata.CheckpointAnnotationHostArch],
		Kernel:         a[metadata.CheckpointAnnotationHostKernel],
	}
	if a[annotationManager] == "cri-o" {
		info.Engine = "CRI-O"
		var cm struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal([]byte(a[annotationCRIOMetadata]), &cm); err == nil && cm.Name != "" {
			info.ContainerName = cm.Name
		}
	}
	if n := a[annotationContainerName]; n != "" {
		info.ContainerName = n
	}
	if info.Image == "" {
		info.Image = a[annotationCRIOImageName]
	}
	if rt := a[metadata.CheckpointAnnotationRuntimeName]; rt != "" && info.Runtime == "" {
		info.Runtime = rt
	}
	if _, err := os.Stat(filepath.Join(scratch, stats.StatsDump)); err == nil {
		d, err := os.Open(scratch)
		if err != nil {
			return nil, err
		}
		st, err := readDumpStats(d)
		d.Close()
		if err != nil {
			return nil, &RejectedError{Member: stats.StatsDump, Reason: err.Error()}
		}
		info.FrozenTime = time.Duration(st.GetFrozenTime()) * time.Microsecond
		info.PagesWritten = st.GetPagesWritten()
	}
	if info.CRIUVersion == "" || info.Kernel == "" || info.Architecture == "" {
		// CRI-O records none of them: CRIU's dump.log starts with its
		// version and the host's uname.
		version, kernel, arch := dumpLogHeader(filepath.Join(scratch, metadata.DumpLogFile))
		if info.CRIUVersion == "" {
			info.CRIUVersion = version
		}
		if info.Kernel == "" {
			info.Kernel = kernel
		}
		if info.Architecture == "" {
			info.Architecture = criuArch(arch)
		}
	}
	if _, ok := sum.Files["checkpoint/pstree.img"]; ok {
		n, comm, err := processTree(p, scratch)
		if err != nil {
			return nil, &RejectedError{Member: "checkpoint/pstree.img", Reason: err.Error()}
		}
		info.Processes, info.Command = n, comm
	}
	info.Annotations = map[string]string{
		metadata.CheckpointAnnotationName:            info.ContainerName,
		metadata.CheckpointAnnotationPod:             info.PodName,
		metadata.CheckpointAnnotationNamespace:       info.PodNamespace,
		metadata.CheckpointAnnotationEngine:          info.Engine,
		metadata.CheckpointAnnotationRootfsImageName: info.Image,
		metadata.CheckpointAnnotationRootfsImageID:   info.ImageRef,
		metadata.CheckpointAnnotationRuntimeName:     info.Runtime,
		metadata.CheckpointAnnotationRuntimeVersion:  info.RuntimeVersion,
		metadata.CheckpointAnnotationCriuVersion:     info.CRIUVersion,
		metadata.CheckpointAnnotationHostArch:        info.Architecture,
		metadata.CheckpointAnnotationHostKernel:      info.Kernel,
	}
	for k, v := range info.Annotations {
		if v == "" {
			delete(info.Annotations, k)
		}
	}
	if info.ContainerName == "" {
		return nil, &RejectedError{Member: metadata.ConfigDumpFile, Reason: "no container name"}
	}
	return info, nil
}

// readDumpStats reads stats-dump with go-criu, guarding the short-file case
// its reader does not check.
func readDumpStats(dir *os.File) (*stats.DumpStatsEntry, error) {
	fi, err := os.Stat(filepath.Join(dir.Name(), stats.StatsDump))
	if err != nil {
		return nil, err
	}
	if fi.Size() < stats.PayloadOffset {
		return nil, fmt.Errorf("stats-dump too short")
	}
	b, err := os.ReadFile(filepath.Join(dir.Name(), stats.StatsDump))
	if err != nil {
		return nil, err
	}
	size := int64(uint32(b[8]) | uint32(b[9])<<8 | uint32(b[10])<<16 | uint32(b[11])<<24)
	if size > fi.Size()-stats.PayloadOffset {
		return nil, fmt.Errorf("stats-dump payload size %d exceeds the file", size)
	}
	return stats.CriuGetDumpStats(dir)
}

// dumpLogHeader reads the CRIU version ("Version: 4.2.1 (gitid 0)") and the
// kernel and machine ("Running on <node> Linux <release> <version...>
// <machine>") from the head of a dump.log.
func dumpLogHeader(p string) (version, kernel, machine string) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, ") "); ok {
			line = rest
		}
		if v, ok := strings.CutPrefix(line, "Version: "); ok && version == "" {
			version, _, _ = strings.Cut(v, " ")
		}
		if v, ok := strings.CutPrefix(line, "Running on "); ok && kernel == "" {
			f := strings.Fields(v)
			if len(f) >= 4 {
				kernel, machine = f[2], f[len(f)-1]
			}
		}
	}
	return version, kernel, machine
}

// criuArch maps a uname machine to a Go architecture name.
func criuArch(machine string) string {
	switch machine {
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return machine
}

// processTree reads CRIU's process tree (pstree.img, the root's
// core-<pid>.img) with go-criu's image types and returns the number of processes
// and the root's command name.
func processTree(p, scratch string) (n int, comm string, err error) {
	dir := filepath.Join(scratch, metadata.CheckpointDirectory)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return 0, "", err
	}
	if err := extractMembers(p, dir, func(name string) bool {
		base, ok := strings.CutPrefix(name, metadata.CheckpointDirectory+"/")
		if !ok || strings.Contains(base, "/") {
			return false
		}
		if base == "pstree.img" {
			return true
		}
		pid, ok := strings.CutSuffix(strings.TrimPrefix(base, "core-"), ".img")
		return strings.HasPrefix(base, "core-") && ok && pid != "" && strings.Trim(pid, "0123456789") == ""
	}, 1<<20); err != nil {
		return 0, "", err
	}
	entries, err := readImage(filepath.Join(dir, "pstree.img"), func() proto.Message { return &pstree.PstreeEntry{} })
	if err != nil {
		return 0, "", fmt.Errorf("pstree.img: %w", err)
	}
	pids := map[uint32]bool{}
	for _, e := range entries {
		pids[e.(*pstree.PstreeEntry).GetPid()] = true
	}
	for _, e := range entries {
		pe := e.(*pstree.PstreeEntry)
		if pe.GetPpid() == 0 {
			if comm != "" {
				return 0, "", errors.New("process tree has two roots")
			}
			core, err := readImage(filepath.Join(dir, fmt.Sprintf("core-%d.img", pe.GetPid())), func() proto.Message { return &criucore.CoreEntry{} })
			if err != nil || len(core) != 1 {
				return 0, "", fmt.Errorf("core image of the root process %d: %v", pe.GetPid(), err)
			}
			comm = core[0].(*criucore.CoreEntry).GetTc().GetComm()
			if comm == "" {
				comm = "?"
			}
		} else if !pids[pe.GetPpid()] {
			return 0, "", fmt.Errorf("process %d has an unknown parent %d", pe.GetPid(), pe.GetPpid())
		}
	}
	if comm == "" {
		return 0, "", errors.New("process tree has no root")
	}
	return len(entries), comm, nil
}

// CRIU image magics that come before an image's own magic.
const (
	imgCommonMagic  = 0x54564319
	imgServiceMagic = 0x55105940
)

// readImage decodes a CRIU protobuf image: its magic, then entries of a
// 32-bit little-endian size and a message (the format go-criu's crit
// reads).
func readImage(p string, newEntry func() proto.Message) ([]proto.Message, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if len(b) < 4 {
		return nil, io.ErrUnexpectedEOF
	}
	off := 4
	if m := binary.LittleEndian.Uint32(b); m == imgCommonMagic || m == imgServiceMagic {
		off = 8
	}
	var out []proto.Message
	for off < len(b) {
		if off+4 > len(b) {
			return nil, io.ErrUnexpectedEOF
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		if n > len(b)-off {
			return nil, fmt.Errorf("entry of %d bytes runs past the image", n)
		}
		m := newEntry()
		if err := proto.Unmarshal(b[off:off+n], m); err != nil {
			return nil, err
		}
		out = append(out, m)
		off += n
	}
	return out, nil
}
