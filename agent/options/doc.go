// Package options holds the livemigrate-agent's command-line options, their
// defaults and Validate. It only parses and checks; it starts nothing.
package options
