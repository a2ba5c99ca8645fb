package rebalance

import (
	"context"
	"strings"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/descheduler/migration"
)

// PluginEnv is the Env of the descheduler: the Filter plugins the placement
// of a migration runs (Karmada's taint and affinity filters, the
// maintenance filter, Capacity, Latency) and the LiveMigration's own
// downtime estimate, learned from the migrations into the target.
type PluginEnv struct {
	Ctx     context.Context
	Plugins []framework.Plugin
	// Clusters by name, as listed for the round.
	Clusters map[string]*clusterv1alpha1.Cluster
	// History is the LiveMigrations listed for the round, and HistoryN how
	// many of the latest into a target the estimate learns from
	// (--downtime-history).
	History  []lmv1alpha1.LiveMigration
	HistoryN int
	// Bandwidth (bytes/s) is --default-bandwidth.
	Bandwidth int64

	overhead map[string][2]time.Duration
}

// NewPluginEnv indexes the round's clusters.
func NewPluginEnv(ctx context.Context, plugins []framework.Plugin, objs *Objects, historyN int, bandwidth int64) *PluginEnv {
	e := &PluginEnv{Ctx: ctx, Plugins: plugins, Clusters: map[string]*clusterv1alpha1.Cluster{}, History: objs.Migrations,
		HistoryN: historyN, Bandwidth: bandwidth}
	for i := range objs.Clusters {
		e.Clusters[objs.Clusters[i].Name] = &objs.Clusters[i]
	}
	return e
}

// Filter runs every Filter plugin on the target, as placement.Score does.
func (e *PluginEnv) Filter(w *Workload, target *Cluster) string {
	c := e.Clusters[target.Name]
	if c == nil {
		return "is not a member cluster"
	}
	var why []string
	for _, pl := range e.Plugins {
		f, ok := pl.(framework.FilterPlugin)
		if !ok {
			continue
		}
		if res := f.Filter(e.Ctx, &w.Binding.Spec, &w.Binding.Status, c); !res.IsSuccess() {
			for _, r := range res.Reasons() {
				why = append(why, pl.Name()+": "+r)
			}
		}
	}
	return strings.Join(why, "; ")
}

// learnedBase is the size the learned overhead's growth is read at: the
// overhead is fixed + per byte × size, so two readings give both parts.
const learnedBase = 1 << 30

// Downtime is the LiveMigration's estimate before pre-copy measured
// anything: the checkpoints at the default bandwidth
// (migration.EstimateDowntime) plus the dump, pull and restore time learned
// from the latest migrations into target (migration.LearnedOverhead).
func (e *PluginEnv) Downtime(w *Workload, target string) time.Duration {
	d := migration.EstimateDowntime(0, w.MemoryBytes, e.Bandwidth)
	if e.HistoryN <= 0 {
		return d
	}
	if e.overhead == nil {
		e.overhead = map[string][2]time.Duration{}
	}
	o, ok := e.overhead[target]
	if !ok {
		fixed, _ := migration.LearnedOverhead(e.History, target, 0, e.HistoryN)
		at, _ := migration.LearnedOverhead(e.History, target, learnedBase, e.HistoryN)
		o = [2]time.Duration{fixed, at - fixed}
		e.overhead[target] = o
	}
	return d + o[0] + time.Duration(float64(o[1])*float64(w.MemoryBytes)/learnedBase)
}
