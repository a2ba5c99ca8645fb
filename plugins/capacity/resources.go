package capacity

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// slots interns resource names into small integer indexes, so the per-call
// paths work on []int64 vectors instead of ResourceLists. It grows when a new
// (extended) resource name is seen, which happens only while precomputing.
type slots struct {
	mu    sync.RWMutex
	index map[corev1.ResourceName]int
	names []corev1.ResourceName
}

func newSlots() *slots {
	s := &slots{index: map[corev1.ResourceName]int{}}
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, corev1.ResourcePods} {
		s.slot(n)
	}
	return s
}

const (
	slotCPU  = 0
	slotPods = 3
)

// slot returns the index of name, adding it if new.
func (s *slots) slot(name corev1.ResourceName) int {
	s.mu.RLock()
	i, ok := s.index[name]
	s.mu.RUnlock()
	if ok {
		return i
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[name]; ok {
		return i
	}
	i = len(s.names)
	s.index[name] = i
	s.names = append(s.names, name)
	return i
}

func (s *slots) name(i int) corev1.ResourceName {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.names[i]
}

// amount converts a quantity to the int64 unit used for its resource: milli
// units for CPU, whole units (rounded up) for everything else.
func amount(name corev1.ResourceName, q resource.Quantity) int64 {
	if name == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// format renders an amount back as a quantity string (for reasons only).
func format(name corev1.ResourceName, v int64) string {
	if name == corev1.ResourceCPU {
		return resource.NewMilliQuantity(v, resource.DecimalSI).String()
	}
	if name == corev1.ResourceMemory || name == corev1.ResourceEphemeralStorage {
		return resource.NewQuantity(v, resource.BinarySI).String()
	}
	return resource.NewQuantity(v, resource.DecimalSI).String()
}

// vector is a resource amount per slot; a slot past its length is zero.
type vector []int64

func (v vector) get(i int) int64 {
	if i < len(v) {
		return v[i]
	}
	return 0
}

func (s *slots) vector(rl corev1.ResourceList) vector {
	var v vector
	for name, q := range rl {
		i := s.slot(name)
		for len(v) <= i {
			v = append(v, 0)
		}
		v[i] += amount(name, q)
	}
	return v
}
