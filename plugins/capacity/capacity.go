package capacity

import (
	"fmt"
	"sync"
	"sync/atomic"

	"k8s.io/client-go/tools/cache"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"

	"github.com/livemigrate/livemigrate/plugins/config"
)

// Name is the plugin's name, as given to Karmada's --plugins flag.
const Name = "Capacity"

var (
	_ framework.FilterPlugin    = &Capacity{}
	_ framework.ScorePlugin     = &Capacity{}
	_ framework.ScoreExtensions = &Capacity{}
)

// Capacity filters and scores clusters by free resources.
type Capacity struct {
	strategy  config.ScoringStrategy
	weights   []weight
	weightSum int64

	slots *slots

	mu       sync.RWMutex
	clusters map[string]*clusterInfo

	lastBinding atomic.Pointer[bindingReq]
}

type weight struct {
	slot   int
	weight int64
}

// New builds the plugin from defaulted args, validating them again.
func New(args *config.CapacityArgs) (*Capacity, error) {
	if args == nil {
		args = &config.CapacityArgs{}
	}
	a := *args
	config.SetDefaultsCapacityArgs(&a)
	if errs := config.ValidateCapacityArgs(nil, &a); len(errs) > 0 {
		return nil, fmt.Errorf("invalid %s args: %w", Name, errs.ToAggregate())
	}
	p := &Capacity{strategy: *a.Strategy, slots: newSlots(), clusters: map[string]*clusterInfo{}}
	for name, w := range a.ResourceWeights {
		if w == 0 {
			continue
		}
		p.weights = append(p.weights, weight{slot: p.slots.slot(name), weight: w})
		p.weightSum += w
	}
	return p, nil
}

// Name returns the plugin's name.
func (p *Capacity) Name() string { return Name }

// EventHandler returns the handler to register on the Karmada cluster
// informer so that summaries are precomputed when clusters change.
func (p *Capacity) EventHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			if c, ok := obj.(*clusterv1alpha1.Cluster); ok {
				p.OnClusterUpdate(c)
			}
		},
		UpdateFunc: func(_, obj interface{}) {
			if c, ok := obj.(*clusterv1alpha1.Cluster); ok {
				p.OnClusterUpdate(c)
			}
		},
		DeleteFunc: func(obj interface{}) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if c, ok := obj.(*clusterv1alpha1.Cluster); ok {
				p.OnClusterDelete(c.Name)
			}
		},
	}
}
