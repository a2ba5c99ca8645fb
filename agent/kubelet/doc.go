// Package kubelet is a client for the kubelet checkpoint API
// (POST /checkpoint/{namespace}/{pod}/{container}?timeout=N), authorized with
// a bearer token (the agent's ServiceAccount token, re-read when it rotates)
// for the nodes/checkpoint subresource.
//
// Every documented answer maps to a typed error with an IsX helper: the
// feature gate being off, an unknown pod or container, a runtime failure, a
// timeout, and authentication/authorization refusals. It never retries: the
// caller decides, since a checkpoint is not free.
package kubelet
