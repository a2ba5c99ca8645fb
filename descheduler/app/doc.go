// Package app builds the livemigrate-descheduler command: it turns the
// validated options into a controller-runtime manager running the
// LiveMigration controller and its validating webhook, with the in-tree
// hooks (agent resources in member clusters) and the target picker over the
// Capacity and Latency scheduler plugins.
package app
