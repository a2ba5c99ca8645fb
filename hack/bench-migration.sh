#!/usr/bin/env bash
# Runs the live-migration downtime benchmark (benchmarks/migration): a
# StatefulSet of the lab app with a 1 GiB local volume live-migrated from
# member1 to member2 of a lab whose migration data path (checkpoint image
# push to the registry at the target's site, volume replication) crosses
# the WAN relay, for each app memory size
# and link rate, beside two baselines measured in the same run: the
# physical floor ((checkpoint + final delta bytes) / the link's throughput,
# measured by a raw TCP copy through the same relay) and evict-and-recreate
# (that cold copy of the volume plus a fresh app's start), and their ratio,
# the largest speedup a migration could reach. The last line is
# "max downtime/(floor+200ms): R, min speedup vs evict-and-recreate: S".
#
# Needs root and rsync, and the lab binaries (make lab-binaries).
#
# Environment: SIZES (lab app memory, default 64Mi,256Mi,1Gi), RATES
# (Mbit/s, default 100,1000; one lab per rate), VOLUME (default 1Gi), DIRTY
# (percent of the volume's blocks rewritten after the full pre-copy pass,
# default 1), DELAY (one-way, default 5ms), ARGS (more flags).
set -euo pipefail

cd "$(dirname "$0")/.."
command -v rsync >/dev/null || { echo "rsync is not installed (apt-get install -y rsync)" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then echo "must run as root (cgroup freezer, /proc/<pid>/mem, the replication receiver's chroot)" >&2; exit 1; fi

BIN="$(mktemp -t bench-migration.XXXXXX)"
trap 'rm -f "$BIN"' EXIT
go build -o "$BIN" ./benchmarks/migration/
args=(-sizes "${SIZES:-64Mi,256Mi,1Gi}" -rates "${RATES:-100,1000}" -volume "${VOLUME:-1Gi}" -dirty "${DIRTY:-1}" -delay "${DELAY:-5ms}")
# shellcheck disable=SC2206
args+=(${ARGS:-})
echo "$ SIZES=${SIZES:-64Mi,256Mi,1Gi} RATES=${RATES:-100,1000} hack/bench-migration.sh"
"$BIN" "${args[@]}"
