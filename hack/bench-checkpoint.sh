#!/usr/bin/env bash
# Checkpoint-to-pushed-image time and throughput for a lab app with 64 MiB,
# 256 MiB and 1 GiB of memory, against a raw push of the same bytes to the
# same registry in the same run (benchmarks/checkpoint). The last line of the
# output is "ratio checkpoint/raw: R", the worst of the three sizes.
# Further arguments go to the benchmark, e.g. --old-method (the registry in
# the benchmark's process, the checkpoint path always first) to compare with
# results taken before 2026-11-25.
# Needs root: the lab app runs as a runc container in a real cgroup that is
# frozen and dumped by CRIU (--container-runtime=process: the memory
# stand-in, read with process_vm_readv).
set -euo pipefail
cd "$(dirname "$0")/.."
criu=$(hack/ensure-criu.sh | tail -n1)
# Hardware breakpoints never fire in these VMs: without CRIU's
# FI_NO_BREAKPOINTS switch a dump waits forever for its tasks to trap.
export CRIU_FAULT=130
mkdir -p bin
go build -o bin/labapp ./test/labapp
go build -o bin/bench-checkpoint ./benchmarks/checkpoint
# Runtime logs go to a file; the table goes to stdout.
log="${TMPDIR:-/tmp}/bench-checkpoint.log"
exec bin/bench-checkpoint --labapp=bin/labapp --criu="$criu" --runs="${RUNS:-5}" --sizes="${SIZES:-64Mi,256Mi,1Gi}" "$@" 2>"$log"
