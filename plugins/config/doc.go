// Package config holds the versioned configuration of the livemigrate
// scheduler plugins (Capacity and Latency): the file given to
// livemigrate-scheduler with --livemigrate-config, with apiVersion
// config.livemigrate.io/v1alpha1 and kind SchedulerPluginsConfiguration.
//
// types.go declares it (pointer fields: nil means "use the default"),
// defaults.go fills what is nil and nothing else, validation.go checks it and
// returns a field.ErrorList. Plugins validate their args again in New.
package config
