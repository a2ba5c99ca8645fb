// Package features holds the feature gates of the livemigrate-descheduler
// and the livemigrate-agent (component-base feature gates, set with
// --feature-gates). Each binary owns one gate set, made by New and carried
// in its options; nothing reads a process-wide default gate.
package features

import (
	"k8s.io/component-base/featuregate"
)

// PostCopyMigration allows spec.memoryTransfer: PostCopy (the memory pages
// follow the restored process from the frozen source, on demand and in the
// background, instead of being copied under the freeze). Alpha, off by
// default: losing the source or the link before the last page arrived
// loses the workload's memory.
const PostCopyMigration featuregate.Feature = "PostCopyMigration"

var defaults = map[featuregate.Feature]featuregate.FeatureSpec{
	PostCopyMigration: {Default: false, PreRelease: featuregate.Alpha},
}

// New returns a gate set holding every livemigrate feature at its default.
func New() featuregate.MutableFeatureGate {
	g := featuregate.NewFeatureGate()
	if err := g.Add(defaults); err != nil {
		// The table above is constant: an error is a programming mistake.
		panic(err)
	}
	return g
}

// FlagHint is what to pass to enable a feature, for messages that tell a
// user how to get past a gate.
func FlagHint(f featuregate.Feature) string {
	return "--feature-gates=" + string(f) + "=true"
}
