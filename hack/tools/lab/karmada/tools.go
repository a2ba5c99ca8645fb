//go:build tools

// Package tools pins the stock Karmada binaries the lab runs
// (karmada-aggregated-apiserver, karmada-controller-manager, karmada-webhook,
// and karmada-scheduler for side-by-side comparisons with
// livemigrate-scheduler). It has its own module so that Karmada keeps exactly
// the dependency versions it was released with. It is never compiled into
// anything.
package tools

import (
	_ "github.com/karmada-io/karmada/cmd/aggregated-apiserver"
	_ "github.com/karmada-io/karmada/cmd/controller-manager"
	_ "github.com/karmada-io/karmada/cmd/scheduler"
	_ "github.com/karmada-io/karmada/cmd/webhook"
)
