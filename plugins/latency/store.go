package latency

import (
	"math"
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
	observedAt int64 // unix nanoseconds
	known      bool
}

// clusterRTTs are one cluster's measurements, indexed by the store's name
// slots. A record is never modified once in the store (Update replaces it),
// so a reader may keep using one after releasing the lock.
type clusterRTTs struct {
	slot    int   // this cluster's slot among cluster names
	peers   []rtt // by cluster slot
	origins []rtt // by origin slot
}

// Store holds the RTTs of every ClusterLatency, keyed by cluster name,
// reduced to the configured percentile. It is filled from the ClusterLatency
// informer (EventHandler) and read by Filter and Score without allocating.
//
// Cluster and origin names are interned into small integer slots, so a
// candidate's RTT to a target is a slice index once the target's slot is
// known (resolve, once per scheduling cycle), not a map lookup. Slots are
// never reused: a name keeps its slot after its cluster is deleted.
type Store struct {
	percentile config.Percentile

	mu           sync.RWMutex
	clusters     map[string]*clusterRTTs
	clusterSlots map[string]int
	originSlots  map[string]int
}

// NewStore returns an empty store that keeps the given percentile.
func NewStore(p config.Percentile) *Store {
	return &Store{percentile: p, clusters: map[string]*clusterRTTs{},
		clusterSlots: map[string]int{}, originSlots: map[string]int{}}
}

// intern returns the slot of name in slots, adding it if new. The caller
// holds the write lock.
func intern(slots map[string]int, name string) int {
	i, ok := slots[name]
	if !ok {
		i = len(slots)
		slots[name] = i
	}
	return i
}

// Update replaces the measurements of cl's cluster.
func (s *Store) Update(cl *lmv1alpha1.ClusterLatency) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &clusterRTTs{slot: intern(s.clusterSlots, cl.Name)}
	c.peers = s.fill(s.clusterSlots, cl.Status.Peers)
	c.origins = s.fill(s.originSlots, cl.Status.Origins)
	s.clusters[cl.Name] = c
}

// fill returns the usable measurements of ms indexed by their names' slots.
// The caller holds the write lock.
func (s *Store) fill(slots map[string]int, ms []lmv1alpha1.RTTMeasurement) []rtt {
	var out []rtt
	for _, m := range ms {
		v, ok := s.pick(m)
		if !ok {
			continue
		}
		i := intern(slots, m.Name)
		if i >= len(out) {
			out = append(out, make([]rtt, i+1-len(out))...)
		}
		out[i] = v
	}
	return out
}

func (s *Store) pick(m lmv1alpha1.RTTMeasurement) (rtt, bool) {
	d := m.P50
	if s.percentile == config.P90 {
		d = m.P90
	}
	if d == nil || m.Samples == 0 {
		return rtt{}, false
	}
	return rtt{value: d.Duration, observedAt: nanos(m.ObservedAt.Time), known: true}, true
}

// Delete forgets the measurements of cluster name.
func (s *Store) Delete(name string) {
	s.mu.Lock()
	delete(s.clusters, name)
	s.mu.Unlock()
}

// slotTarget is a Target resolved against the store at one moment.
type slotTarget struct {
	kind   TargetKind
	name   string
	weight int64
	slot   int          // -1: no cluster ever measured this name
	rec    *clusterRTTs // a cluster target's own measurements, nil if none
}

// resolve returns targets resolved to the store's slots, as of now. Filter
// and Score resolve a binding's targets once per scheduling cycle.
func (s *Store) resolve(targets []Target) []slotTarget {
	out := make([]slotTarget, len(targets))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range targets {
		out[i] = s.resolveLocked(&targets[i])
	}
	return out
}

func (s *Store) resolveLocked(t *Target) slotTarget {
	st := slotTarget{kind: t.Kind, name: t.Name, weight: t.Weight, slot: -1}
	slots := s.originSlots
	if t.Kind == TargetCluster {
		slots = s.clusterSlots
		st.rec = s.clusters[t.Name]
	}
	if i, ok := slots[t.Name]; ok {
		st.slot = i
	}
	return st
}

// nanos returns t in unix nanoseconds; the zero time is earlier than all.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

// RTT returns the RTT between cluster candidate and target, if measured no
// earlier than notBefore. For a cluster target the candidate's own
// measurement is used, else the target's measurement of the candidate (RTT
// is symmetric); a cluster is 0 from itself.
func (s *Store) RTT(candidate string, t *Target, notBefore time.Time) (time.Duration, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.resolveLocked(t)
	return s.rttLocked(s.clusters[candidate], candidate, &st, nanos(notBefore))
}

// weightedRTT returns the weighted mean RTT between candidate and the
// targets with a measurement no older than notBefore (unix nanoseconds), and
// false when none has one.
func (s *Store) weightedRTT(candidate string, targets []slotTarget, notBefore int64) (time.Duration, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[candidate]
	var sum time.Duration
	var weights int64
	for i := range targets {
		if d, ok := s.rttLocked(c, candidate, &targets[i], notBefore); ok {
			sum += d * time.Duration(targets[i].weight)
			weights += targets[i].weight
		}
	}
	if weights == 0 {
		return 0, false
	}
	return sum / time.Duration(weights), true
}

// exceeding returns the index of the first target whose fresh RTT from
// candidate exceeds max, with that RTT, or -1.
func (s *Store) exceeding(candidate string, targets []slotTarget, max time.Duration, notBefore int64) (int, time.Duration) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[candidate]
	for i := range targets {
		if d, ok := s.rttLocked(c, candidate, &targets[i], notBefore); ok && d > max {
			return i, d
		}
	}
	return -1, 0
}

// rttLocked looks t up from candidate, whose record is c (nil if none).
func (s *Store) rttLocked(c *clusterRTTs, candidate string, t *slotTarget, notBefore int64) (time.Duration, bool) {
	if t.kind == TargetCluster && t.name == candidate {
		return 0, true
	}
	if t.slot < 0 {
		return 0, false
	}
	if c != nil {
		m := c.origins
		if t.kind == TargetCluster {
			m = c.peers
		}
		if v := at(m, t.slot); v.known && v.observedAt >= notBefore {
			return v.value, true
		}
	}
	if t.kind == TargetCluster && t.rec != nil {
		slot := -1
		if c != nil {
			slot = c.slot
		} else if i, ok := s.clusterSlots[candidate]; ok {
			slot = i
		}
		if v := at(t.rec.peers, slot); v.known && v.observedAt >= notBefore {
			return v.value, true
		}
	}
	return 0, false
}

// at returns m[i], or an unknown rtt when i is out of range.
func at(m []rtt, i int) rtt {
	if i < 0 || i >= len(m) {
		return rtt{}
	}
	return m[i]
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
