package freezer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"k8s.io/apimachinery/pkg/types"
)

// Version is a cgroup version.
type Version int

const (
	// V1 is the cgroup v1 freezer controller.
	V1 Version = 1
	// V2 is the cgroup v2 unified hierarchy.
	V2 Version = 2
)

// Driver is the kubelet's cgroup driver.
type Driver string

const (
	// DriverCgroupfs lays pods out as kubepods/burstable/pod<uid>.
	DriverCgroupfs Driver = "cgroupfs"
	// DriverSystemd lays pods out as
	// kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice.
	DriverSystemd Driver = "systemd"
)

// State is the freezer state of a cgroup.
type State string

const (
	Thawed   State = "THAWED"
	Freezing State = "FREEZING"
	Frozen   State = "FROZEN"
)

// ErrPodCgroupNotFound is returned when no cgroup of the pod exists.
var ErrPodCgroupNotFound = errors.New("pod cgroup not found")

// IsPodCgroupNotFound tells whether err says the pod has no cgroup.
func IsPodCgroupNotFound(err error) bool { return errors.Is(err, ErrPodCgroupNotFound) }

// TimeoutError is returned when the kernel did not report the wanted state in
// time (a task in uninterruptible sleep can hold a v1 freeze in FREEZING).
type TimeoutError struct {
	Path  string
	Want  State
	Last  State
	Cause error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("cgroup %s did not reach %s (last %s): %v", e.Path, e.Want, e.Last, e.Cause)
}

func (e *TimeoutError) Unwrap() error { return e.Cause }

// IsTimeout tells whether err is a *TimeoutError.
func IsTimeout(err error) bool {
	var t *TimeoutError
	return errors.As(err, &t)
}

// Freezer freezes pod cgroups of one node.
type Freezer struct {
	// Version selects the hierarchy.
	Version Version
	// Mount is the hierarchy's mount point: the freezer controller's mount
	// for v1 (/sys/fs/cgroup/freezer), the unified mount for v2
	// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
	Mount string
	// Parent is the kubelet's --cgroup-root below the mount ("" or "/").
	Parent string
	// Drivers are tried in order when looking for a pod; both when empty.
	Drivers []Driver
	// PollInterval between state reads; 1ms when zero.
	PollInterval time.Duration
}

// Detect returns a Freezer for the host's cgroup root (usually
// /sys/fs/cgroup): v1 when a freezer controller is mounted (what the kubelet
// uses on hybrid hosts), else v2.
func Detect(root string) (*Freezer, error) {
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return &Freezer{Version: V2, Mount: root}, nil
	}
	if _, err := os.Stat(filepath.Join(root, "freezer", "freezer.state")); err == nil || fileExists(filepath.Join(root, "freezer", "cgroup.procs")) {
		return &Freezer{Version: V1, Mount: filepath.Join(root, "freezer")}, nil
	}
	if fileExists(filepath.Join(root, "unified", "cgroup.controllers")) {
		return &Freezer{Version: V2, Mount: filepath.Join(root, "unified")}, nil
	}
	return nil, fmt.Errorf("no cgroup freezer found under %s", root)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// PodCgroupCandidates lists the paths, relative to the mount, where the
// kubelet puts the cgroup of the pod with the given UID for a driver.
func PodCgroupCandidates(parent string, driver Driver, uid types.UID) []string {
	parent = strings.Trim(parent, "/")
	var out []string
	switch driver {
	case DriverSystemd:
		u := strings.ReplaceAll(string(uid), "-", "_")
		base := "kubepods.slice"
		if parent != "" {
			base = filepath.Join(parent, base)
		}
		out = append(out,
			filepath.Join(base, "kubepods-pod"+u+".slice"),
			filepath.Join(base, "kubepods-burstable.slice", "kubepods-burstable-pod"+u+".slice"),
			filepath.Join(base, "kubepods-besteffort.slice", "kubepods-besteffort-pod"+u+".slice"),
		)
	default:
		base := filepath.Join(parent, "kubepods")
		out = append(out,
			filepath.Join(base, "pod"+string(uid)),
			filepath.Join(base, "burstable", "pod"+string(uid)),
			filepath.Join(base, "besteffort", "pod"+string(uid)),
		)
	}
	return out
}

// PodPath finds the pod's cgroup, relative to the mount.
func (f *Freezer) PodPath(uid types.UID) (string, error) {
	if uid == "" || strings.ContainsAny(string(uid), "/.") {
		return "", fmt.Errorf("invalid pod UID %q", uid)
	}
	drivers := f.Drivers
	if len(drivers) == 0 {
		drivers = []Driver{DriverCgroupfs, DriverSystemd}
	}
	for _, d := range drivers {
		for _, p := range PodCgroupCandidates(f.Parent, d, uid) {
			if fi, err := os.Stat(filepath.Join(f.Mount, p)); err == nil && fi.IsDir() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("pod %s under %s: %w", uid, f.Mount, ErrPodCgroupNotFound)
}

// Freeze freezes the cgroup at path (relative to the mount) and waits until
// the kernel reports it frozen.
func (f *Freezer) Freeze(ctx context.Context, path string) error {
	return f.set(ctx, path, Frozen)
}

// Thaw thaws the cgroup at path and waits until it is thawed.
func (f *Freezer) Thaw(ctx context.Context, path string) error {
	return f.set(ctx, path, Thawed)
}

// State reads the cgroup's freezer state.
func (f *Freezer) State(path string) (State, error) {
	dir, err := f.dir(path)
	if err != nil {
		return "", err
	}
	if f.Version == V2 {
		return readV2State(dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
	if err != nil {
		return "", fmt.Errorf("read freezer state: %w", err)
	}
	return State(strings.TrimSpace(string(b))), nil
}

func (f *Freezer) dir(path string) (string, error) {
	clean := filepath.Clean("/" + path)
	if clean == "/" {
		return "", fmt.Errorf("refusing to freeze the root cgroup")
	}
	if f.Version == V2 {
		if err := cgroup2.VerifyGroupPath(clean); err != nil {
			return "", fmt.Errorf("cgroup path %q: %w", path, err)
		}
	}
	dir := filepath.Join(f.Mount, clean)
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("cgroup %s: %w", dir, ErrPodCgroupNotFound)
	}
	return dir, nil
}

func readV2State(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return "", fmt.Errorf("read cgroup.events: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == "frozen" {
			if v == "1" {
				return Frozen, nil
			}
			return Thawed, nil
		}
	}
	return "", fmt.Errorf("no frozen key in %s/cgroup.events (kernel without cgroup v2 freezer?)", dir)
}

func (f *Freezer) set(ctx context.Context, path string, want State) error {
	dir, err := f.dir(path)
	if err != nil {
		return err
	}
	var file, value string
	switch {
	case f.Version == V2 && want == Frozen:
		file, value = "cgroup.freeze", "1"
	case f.Version == V2:
		file, value = "cgroup.freeze", "0"
	default:
		file, value = "freezer.state", string(want)
	}
	poll := f.PollInterval
	if poll <= 0 {
		poll = time.Millisecond
	}
	var last State
	for {
		// v1 needs the write repeated while FREEZING: a task that was
		// forking may escape the first pass (as runc does).
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
			return fmt.Errorf("write %s: %w", file, err)
		}
		last, err = f.State(path)
		if err != nil {
			return err
		}
		if last == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return &TimeoutError{Path: dir, Want: want, Last: last, Cause: ctx.Err()}
		case <-time.After(poll):
		}
	}
}
