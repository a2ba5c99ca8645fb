// Package options holds the flags of the livemigrate-descheduler binary and
// their validation. It only parses and checks; cmd/livemigrate-descheduler
// turns the options into a running manager.
package options
