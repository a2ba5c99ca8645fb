package scenario

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Watch starts observing the app's running source pods, and whether a copy
// runs in another member, for a migration that something else starts (a
// drain). The returned function stops the observer and returns the
// observation with the app's newest LiveMigration created since, ready for
// CheckSucceeded or CheckDeploymentSucceeded.
func (a *App) Watch(ctx context.Context) (func(context.Context) (*Observation, error), error) {
	srcs, why, err := a.runningPods(ctx, a.Source)
	if err != nil {
		return nil, err
	}
	if len(srcs) != a.Replicas {
		return nil, fmt.Errorf("%d of %d source pods run before the migration: %s", len(srcs), a.Replicas, why)
	}
	earlier, err := a.migrationUIDs(ctx)
	if err != nil {
		return nil, err
	}
	obs := &Observation{Source: srcs[0], Sources: srcs}
	octx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		obs.PerSource = a.observe(octx, srcs, "")
		obs.Samples = obs.PerSource[0]
	}()
	return func(ctx context.Context) (*Observation, error) {
		cancel()
		wg.Wait()
		obs.Duration = time.Since(start)
		lm, err := a.migration(ctx, earlier)
		if err != nil {
			return obs, err
		}
		obs.Migration = lm
		return obs, nil
	}, nil
}
