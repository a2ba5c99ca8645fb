#!/usr/bin/env bash
# Runs the descheduler benchmarks (benchmarks/descheduler: one load
# rebalancing round over 100 member clusters and 10,000 ResourceBindings
# served from informer stores, and the baseline that only lists the same
# bindings and sums their requests per cluster) and prints, as its last
# line, "ratio decide/iterate: R" (median ns/op over median ns/op).
#
# It is `go test -bench '^BenchmarkRebalanceRound$' -benchmem` run COUNT
# times as interleaved runs of one test binary.
#
# Environment: COUNT (default 5), BENCHTIME (default 1s), BENCHFLAGS (extra
# test binary flags, e.g. "-test.cpu 1"), OUT (raw output file, default a
# temporary file).
set -euo pipefail

cd "$(dirname "$0")/.."
COUNT="${COUNT:-5}"
BENCHTIME="${BENCHTIME:-1s}"
BENCHFLAGS="${BENCHFLAGS:-}" # extra test binary flags, e.g. "-test.cpu 1"
OUT="${OUT:-$(mktemp -t bench-descheduler.XXXXXX)}"

# One test binary, run COUNT times: each run measures iterate and decide
# back to back, so a change in machine load hits both alike.
BIN="$(mktemp -t bench-descheduler-bin.XXXXXX)"
trap 'rm -f "$BIN"' EXIT
go test -c -o "$BIN" ./benchmarks/descheduler/
: > "$OUT"
load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
for _ in $(seq "$COUNT"); do
  # shellcheck disable=SC2086 # BENCHFLAGS is a list of flags
  "$BIN" -test.run '^$' -test.bench '^BenchmarkRebalanceRound$' -test.benchmem \
    -test.benchtime "$BENCHTIME" $BENCHFLAGS | tee -a "$OUT"
done

# median of the values of one unit of one sub-benchmark
median() { # $1 sub-benchmark name, $2 unit
  awk -v name="BenchmarkRebalanceRound/$1" -v unit="$2" '
    { sub(/-[0-9]+$/, "", $1) }
    $1 == name { for (i = 2; i < NF; i++) if ($(i+1) == unit) print $i }' "$OUT" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NaN"; exit }
      if (NR % 2) printf "%.0f\n", v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

iterate=$(median iterate ns/op)
decide=$(median decide ns/op)
echo
printf 'load average (1, 5, 15 min): before %s, after %s; %s CPUs\n' \
  "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" "$(nproc 2>/dev/null || echo '?')"
printf 'median ns/op: iterate %s, decide %s\n' "$iterate" "$decide"
printf 'median cpu-ns/op: iterate %s, decide %s\n' "$(median iterate cpu-ns/op)" "$(median decide cpu-ns/op)"
printf 'median B/op: iterate %s, decide %s\n' "$(median iterate B/op)" "$(median decide B/op)"
printf 'median allocs/op: iterate %s, decide %s\n' "$(median iterate allocs/op)" "$(median decide allocs/op)"
awk -v d="$(median decide cpu-ns/op)" -v i="$(median iterate cpu-ns/op)" \
  'BEGIN { printf "cpu-time ratio decide/iterate (less sensitive to other load): %.2f\n", d / i }'
awk -v d="$decide" -v i="$iterate" 'BEGIN { printf "ratio decide/iterate: %.2f\n", d / i }'
