package latency

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/plugins/config"
)

// rtt is one measurement, reduced to what the plugin uses.
type rtt struct {
	value      time.Duration
	observedAt time.Time
}

type clusterRTTs struct {
	peers   map[string]rtt
	origins map[string]rtt
}

// Store holds the RTTs of every ClusterLatency, keyed by cluster name,
// reduced to the configured percentile. It is filled from the ClusterLatency
// informer (EventHandler) and read by Filter and Score without allocating.
type Store struct {
	percentile config.Percentile

	mu       sync.RWMutex
	clusters map[string]*clusterRTTs
}

// NewStore returns an empty store that keeps the given percentile.
func NewStore(p config.Percentile) *Store {
	return &Store{percentile: p, clusters: map[string]*clusterRTTs{}}
}

// Update replaces the measurements of cl's cluster.
func (s *Store) Update(cl *lmv1alpha1.ClusterLatency) {
	c := &clusterRTTs{
		peers:   make(map[string]rtt, len(cl.Status.Peers)),
		origins: make(map[string]rtt, len(cl.Status.Origins)),
	}
	for _, m := range cl.Status.Peers {
		if v, ok := s.pick(m); ok {
			c.peers[m.Name] = v
		}
	}
	for _, m := range cl.Status.Origins {
		if v, ok := s.pick(m); ok {
			c.origins[m.Name] = v
		}
	}
	s.mu.Lock()
	s.clusters[cl.Name] = c
	s.mu.Unlock()
}

func (s *Store) pick(m lmv1alpha1.RTTMeasurement) (rtt, bool) {
	d := m.P50
	if s.percentile == config.P90 {
		d = m.P90
	}
	if d == nil || m.Samples == 0 {
		return rtt{}, false
	}
	return rtt{value: d.Duration, observedAt: m.ObservedAt.Time}, true
}

// Delete forgets the measurements of cluster name.
func (s *Store) Delete(name string) {
	s.mu.Lock()
	delete(s.clusters, name)
	s.mu.Unlock()
}

// RTT returns the RTT between cluster candidate and target, if measured no
// earlier than notBefore. For a cluster target the candidate's own
// measurement is used, else the target's measurement of the candidate (RTT
// is symmetric); a cluster is 0 from itself.
func (s *Store) RTT(candidate string, t *Target, notBefore time.Time) (time.Duration, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rttLocked(s.clusters[candidate], candidate, t, notBefore)
}

// WeightedRTT returns the weighted mean RTT between candidate and the
// targets with a fresh measurement, and false when none has one.
func (s *Store) WeightedRTT(candidate string, targets []Target, notBefore time.Time) (time.Duration, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[candidate]
	var sum time.Duration
	var weights int64
	for i := range targets {
		if d, ok := s.rttLocked(c, candidate, &targets[i], notBefore); ok {
			sum += d * time.Duration(targets[i].Weight)
			weights += targets[i].Weight
		}
	}
	if weights == 0 {
		return 0, false
	}
	return sum / time.Duration(weights), true
}

// Exceeding returns the first target whose fresh RTT from candidate exceeds
// max, with that RTT.
func (s *Store) Exceeding(candidate string, targets []Target, max time.Duration, notBefore time.Time) (*Target, time.Duration) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[candidate]
	for i := range targets {
		if d, ok := s.rttLocked(c, candidate, &targets[i], notBefore); ok && d > max {
			return &targets[i], d
		}
	}
	return nil, 0
}

func (s *Store) rttLocked(c *clusterRTTs, candidate string, t *Target, notBefore time.Time) (time.Duration, bool) {
	if t.Kind == TargetCluster && t.Name == candidate {
		return 0, true
	}
	if c != nil {
		m := c.origins
		if t.Kind == TargetCluster {
			m = c.peers
		}
		if v, ok := m[t.Name]; ok && !v.observedAt.Before(notBefore) {
			return v.value, true
		}
	}
	if t.Kind == TargetCluster {
		if c := s.clusters[t.Name]; c != nil {
			if v, ok := c.peers[candidate]; ok && !v.observedAt.Before(notBefore) {
				return v.value, true
			}
		}
	}
	return 0, false
}

// EventHandler returns the handler to register on a ClusterLatency informer;
// it accepts typed objects and unstructured ones (from a dynamic informer).
func (s *Store) EventHandler() cache.ResourceEventHandler {
	update := func(obj interface{}) {
		if cl := toClusterLatency(obj); cl != nil {
			s.Update(cl)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, obj interface{}) { update(obj) },
		DeleteFunc: func(obj interface{}) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if m, ok := obj.(interface{ GetName() string }); ok {
				s.Delete(m.GetName())
			}
		},
	}
}

func toClusterLatency(obj interface{}) *lmv1alpha1.ClusterLatency {
	switch o := obj.(type) {
	case *lmv1alpha1.ClusterLatency:
		return o
	case *unstructured.Unstructured:
		cl := &lmv1alpha1.ClusterLatency{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, cl); err != nil {
			klog.ErrorS(err, "Ignoring malformed ClusterLatency", "clusterLatency", klog.KObj(o))
			return nil
		}
		return cl
	}
	return nil
}
