//go:build tools

// Package tools pins the versions of the development tools (code generators,
// linters) that the Makefile runs. They are built into bin/ by `make tools`.
package tools

import (
	_ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
