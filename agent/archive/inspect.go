package archive

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/checkpoint-restore/go-criu/v7/stats"
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
