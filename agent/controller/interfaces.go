package controller

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
)

// Freezer freezes pod cgroups (agent/freezer).
type Freezer interface {
	PodPath(uid types.UID) (string, error)
	Freeze(ctx context.Context, path string) error
	Thaw(ctx context.Context, path string) error
	State(path string) (freezer.State, error)
}

// Checkpointer calls the kubelet checkpoint API (agent/kubelet).
type Checkpointer interface {
	Checkpoint(ctx context.Context, host string, port int, namespace, pod, container string, timeout time.Duration) ([]string, error)
}

// Inspector validates and reads an archive (agent/archive).
type Inspector func(path string, lim archive.Limits) (*archive.Info, error)

// Pusher builds and pushes a checkpoint image (agent/checkpointimage).
type Pusher func(ctx context.Context, path, containerName string, annotations map[string]string, ref string, o checkpointimage.PushOptions) (*checkpointimage.Result, error)

var (
	_ Freezer   = (*freezer.Freezer)(nil)
	_ Inspector = archive.Inspect
	_ Pusher    = checkpointimage.PushArchive
)
