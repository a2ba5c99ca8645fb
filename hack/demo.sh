#!/usr/bin/env bash
# make demo: start the default lab (Karmada plane + three member clusters,
# with every livemigrate component), run the lab app as a StatefulSet with a
# local volume where the scheduler places it, live-migrate it to another
# member with `kubectl livemigrate move … --wait`, print the timeline and
# check that nothing was lost (labapp verify), then tear the lab down.
#
#   hack/demo.sh            # needs root and `make lab-binaries`
#   hack/demo.sh --keep     # or KEEP=1: leave the lab up (stop it with make lab-down)
#   LAB_DIR=/tmp/lab hack/demo.sh
#
# Exits non-zero when anything fails.
set -euo pipefail

cd "$(dirname "$0")/.."
KEEP=${KEEP:-0}
for arg in "$@"; do
	case "$arg" in
	--keep) KEEP=1 ;;
	-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
	*) echo "unknown argument: $arg" >&2; exit 2 ;;
	esac
done
DIR=${LAB_DIR:-$PWD/.lab}
GO=${GO:-go}

if [[ $(id -u) -ne 0 ]]; then
	echo "demo: needs root (the lab's node runtime freezes real cgroups and reads process memory)" >&2
	exit 1
fi
command -v rsync >/dev/null || { echo "demo: rsync is missing (make deps)" >&2; exit 1; }

mkdir -p bin
"$GO" build -o bin/ ./cmd/livemigrate-lab

teardown() {
	local rc=$?
	if [[ $KEEP == 1 ]]; then
		echo
		echo "The lab stays up (KEEP=1): source $DIR/lab/lab.env && kubectl livemigrate status"
		echo "Stop it with: bin/livemigrate-lab down --dir $DIR"
	else
		echo
		echo "==> Tearing the lab down"
		bin/livemigrate-lab down --dir "$DIR" || rc=1
	fi
	exit $rc
}

echo "==> Starting the lab in $DIR"
start=$(date +%s)
bin/livemigrate-lab up --dir "$DIR"
trap teardown EXIT
echo "(up in $(($(date +%s) - start)) s)"
bin/livemigrate-lab status --dir "$DIR"

bin/livemigrate-lab demo --dir "$DIR"
