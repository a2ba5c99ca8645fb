# livemigrate — live migration of stateful workloads between Karmada clusters.
# `make help` lists the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO          ?= go
BIN         := $(CURDIR)/bin
TEST_TIMEOUT ?= 75m
GOTEST_FLAGS ?=
# Time each fuzz target runs under `make fuzz`.
FUZZTIME    ?= 30s
# package:target of every fuzz target; `make test` runs their seed corpora.
FUZZ_TARGETS := ./agent/archive:FuzzInspect ./agent/replication/tarstream:FuzzExtract ./agent/replication/blockdelta:FuzzApply \
	./agent/replication/blockdelta:FuzzServeIndex ./plugins/latency:FuzzParseRequirement
# Packages whose tests start API servers or a whole lab; everything else is unit level.
LAB_PKGS := /test/integration/|/test/e2e/|/test/install|/test/lab/selftest|/descheduler/integration|/cmd/livemigrate-lab

CONTROLLER_GEN := $(BIN)/controller-gen
GOLANGCI_LINT  := $(BIN)/golangci-lint
# Runs go test, passes its output through and ends it with a summary of the
# failed packages and tests (hack/testsummary).
TESTSUMMARY    := $(GO) run ./hack/testsummary --

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z0-9_.-]+:.*?##/ { printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: deps
deps: ## Install the Debian packages the tests and the lab need (rsync, iproute2) when missing.
	@hack/ensure-deps.sh

.PHONY: criu
criu: ## Install runc and iptables and build CRIU 4.2.1 into a cache outside the clone, when missing (hack/ensure-criu.sh).
	@hack/ensure-criu.sh >/dev/null

.PHONY: build
build: ## Build every binary of the project into bin/.
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: images
images: ## Build the components' OCI images into bin/images without Docker (docs/images.md; IMAGES_FLAGS="--push REGISTRY/PREFIX"; tagged as the chart names them).
	hack/build-images.sh $(IMAGES_FLAGS)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code and CRD manifests (manifests/crds) from api/.
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=manifests/crds
	rm -f charts/livemigrate/files/crds/*.yaml && cp manifests/crds/*.yaml charts/livemigrate/files/crds/

.PHONY: chart-readme
chart-readme: ## Generate charts/livemigrate/README.md from the comments of its values.yaml.
	cd hack/tools/helm && $(GO) build -o $(BIN)/chartrender .
	$(BIN)/chartrender readme --chart charts/livemigrate

.PHONY: manifests
manifests: ## Render the chart into manifests/install/{host,karmada,member}.yaml for kubectl apply (hack/render-manifests.sh).
	hack/render-manifests.sh

.PHONY: krew
krew: ## Build kubectl-livemigrate archives for krew and their manifest into bin/krew (hack/krew/livemigrate.yaml, docs/install.md).
	hack/krew.sh

.PHONY: chart-render
chart-render: ## Render the chart as helm template would (CHART_FLAGS="--namespace livemigrate-system --set installMode=member").
	cd hack/tools/helm && $(GO) build -o $(BIN)/chartrender .
	$(BIN)/chartrender render --chart charts/livemigrate $(CHART_FLAGS)

.PHONY: fmt
fmt: ## Format the code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: verify
verify: verify-fmt vet lint verify-generated verify-docs ## gofmt, go vet, golangci-lint, stale generated files and docs.

.PHONY: verify-fmt
verify-fmt:
	@out=$$(gofmt -s -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet every package.
	$(GO) vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (pinned in hack/tools).
	$(GOLANGCI_LINT) run ./...

.PHONY: verify-docs
verify-docs: ## Check the docs against the tree: phase lists, cmd/ in the layout, make targets, paths and links (hack/docscheck; also part of make test).
	$(GO) test ./hack/docscheck/

.PHONY: verify-generated
verify-generated: generate ## Fail when generated files are stale.
	@if [ -n "$$(git status --porcelain -- api manifests/crds charts/livemigrate/files/crds)" ]; then \
		echo "generated files are stale; run 'make generate' and commit:"; git status --porcelain -- api manifests/crds charts/livemigrate/files/crds; exit 1; fi

##@ Test

.PHONY: test
test: deps criu lab-binaries ## Run all tests: unit, and integration/end-to-end against a real lab (builds the lab binaries when missing); ends with a summary of what failed.
	$(TESTSUMMARY) $(GO) test -timeout $(TEST_TIMEOUT) $(GOTEST_FLAGS) ./...

.PHONY: test-unit
test-unit: ## Run the unit tests only (no lab, no API servers).
	$(GO) test $(GOTEST_FLAGS) $$($(GO) list ./... | grep -v -E '$(LAB_PKGS)')

.PHONY: test-integration
test-integration: deps criu lab-binaries ## Run only the tests that start API servers or a whole lab.
	$(TESTSUMMARY) $(GO) test -timeout $(TEST_TIMEOUT) $(GOTEST_FLAGS) $$($(GO) list ./... | grep -E '$(LAB_PKGS)')

.PHONY: test-e2e
test-e2e: deps criu lab-binaries ## Run the lab end-to-end tests only: checkpoint, replication, live migration (root).
	$(TESTSUMMARY) $(GO) test -v -timeout $(TEST_TIMEOUT) ./test/e2e/...

.PHONY: test-faults
test-faults: deps criu lab-binaries ## Run the whole fault matrix (test/e2e/faults: every fault × phase, into bin/faults/results.jsonl) and 12 concurrent migrations (test/e2e/stress), ≈ 30 min; make test runs three cells and four migrations.
	mkdir -p $(BIN)/faults && rm -f $(BIN)/faults/results.jsonl
	LIVEMIGRATE_FAULTS=all LIVEMIGRATE_FAULTS_RESULTS=$(BIN)/faults/results.jsonl \
		$(GO) test -v -count=1 -timeout $(TEST_TIMEOUT) -run TestFaultMatrix ./test/e2e/faults/
	LIVEMIGRATE_STRESS_MIGRATIONS=12 $(GO) test -v -count=1 -timeout $(TEST_TIMEOUT) -run TestConcurrentMigrations ./test/e2e/stress/

.PHONY: reliability-table
reliability-table: ## Regenerate the fault matrix table of docs/reliability.md from bin/faults/results.jsonl (written by make test-faults).
	$(GO) run ./hack/reliability-table --results $(BIN)/faults/results.jsonl --doc docs/reliability.md --command "make test-faults"

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 30s) each; a failing input is written under the package's testdata/fuzz.
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzzing $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 200x -parallel 2; \
	done

##@ Lab

.PHONY: lab-binaries
lab-binaries: ## Build the lab's Kubernetes, etcd, Karmada and kwok binaries into bin/ (skips what is built).
	hack/lab-binaries.sh

.PHONY: lab-up
lab-up: lab-binaries ## Start the default lab (Karmada plane + three member clusters) in the background.
	$(GO) run ./cmd/livemigrate-lab up

.PHONY: demo
demo: deps criu lab-binaries ## Start the default lab, live-migrate a stateful app across clusters, verify nothing was lost, tear down (KEEP=1 keeps the lab).
	hack/demo.sh

.PHONY: lab-down
lab-down: ## Stop the lab started by lab-up.
	$(GO) run ./cmd/livemigrate-lab down

##@ Benchmarks

.PHONY: bench
bench: bench-scheduler bench-descheduler bench-checkpoint bench-replication bench-migration ## Run every benchmark.

.PHONY: bench-scheduler
bench-scheduler: ## Filter+Score over 1,000 clusters, livemigrate plugins vs Karmada's built-ins.
	hack/bench-scheduler.sh

.PHONY: bench-descheduler
bench-descheduler: ## One load rebalancing round over 100 clusters × 10,000 bindings vs listing them and summing their requests.
	hack/bench-descheduler.sh

.PHONY: bench-checkpoint
bench-checkpoint: ## Checkpoint-to-pushed-image throughput vs a raw push of the same bytes.
	hack/bench-checkpoint.sh

.PHONY: bench-replication
bench-replication: deps ## Volume replication full/delta passes vs a raw copy of the same bytes.
	hack/bench-replication.sh

.PHONY: bench-migration
bench-migration: deps criu lab-binaries ## Live-migration downtime in the lab vs the physical floor and evict-and-recreate.
	hack/bench-migration.sh

##@ Tools

$(CONTROLLER_GEN): hack/tools/go.mod
	cd hack/tools && $(GO) build -o $(CONTROLLER_GEN) sigs.k8s.io/controller-tools/cmd/controller-gen

$(GOLANGCI_LINT): hack/tools/go.mod
	cd hack/tools && $(GO) build -o $(GOLANGCI_LINT) github.com/golangci/golangci-lint/v2/cmd/golangci-lint
