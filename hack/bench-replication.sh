#!/usr/bin/env bash
# Runs the volume replication benchmark (benchmarks/replication): the first
# pass of a 1 GiB volume as the agent runs it (a tar stream over the agents'
# mutual-TLS transport on loopback) and the rsync full pass, against a raw
# io.Copy of the same bytes over the same mTLS transport measured in the same
# run; then a delta pass after 1% of the 4 KiB blocks changed; then the final
# pass under freeze (rsync delta + checksum verification of the whole tree or
# of what changed since a pre-freeze verification, and the block delta
# against the target's block index) through the lab's WAN relay capped at
# 100 Mbit/s and 1 Gbit/s, and the rsync final path and the block delta side
# by side (RUNS interleaved runs each, medians, ratio). The last line is
# "ratio full/raw: R, delta sent: P%, final rsync/block delta at M Mbit/s: F".
# ARGS=-final-only skips the full-pass comparison. Run it alone on the
# machine (no lab or other benchmark beside it): it compares CPU-bound
# transfers.
#
# Needs root (the receiver chroots into the target volume) and rsync
# (Debian package rsync).
#
# Environment: SIZE (bytes, default 1073741824), FILES (default 16), RUNS
# (default 3), RATES (Mbit/s list, default 100,1000), DIR (work directory,
# default a temporary one), ARGS (more flags for the benchmark).
set -euo pipefail

cd "$(dirname "$0")/.."
command -v rsync >/dev/null || { echo "rsync is not installed (apt-get install -y rsync)" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then echo "must run as root: the receiver chroots into the target volume" >&2; exit 1; fi

BIN="$(mktemp -t bench-replication.XXXXXX)"
trap 'rm -f "$BIN"' EXIT
go build -o "$BIN" ./benchmarks/replication/
args=(-size "${SIZE:-1073741824}" -files "${FILES:-16}" -runs "${RUNS:-3}" -rates "${RATES:-100,1000}")
if [ -n "${DIR:-}" ]; then args+=(-dir "$DIR"); fi
# shellcheck disable=SC2206
args+=(${ARGS:-})
"$BIN" "${args[@]}"
