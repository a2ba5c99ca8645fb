// Package app assembles the livemigrate-agent from its options: the
// controller-runtime manager, the reconcilers of the selected mode, the
// restore webhook, metrics and health endpoints. cmd/livemigrate-agent only
// parses flags and calls Run.
package app
