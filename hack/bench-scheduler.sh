#!/usr/bin/env bash
# Runs the scheduler benchmarks (benchmarks/scheduler: one binding over 1,000
# member clusters through Karmada's framework runtime) and prints, as its last
# line, "ratio livemigrate/builtin: R" (median ns/op over median ns/op).
#
# It is `go test -bench '^BenchmarkFilterScore$' -benchmem` with -count 5,
# run as 5 interleaved runs of one test binary.
#
# Environment: COUNT (default 5), BENCHTIME (default 1s), BENCHFLAGS (extra
# test binary flags, e.g. "-test.cpu 1"), OUT (raw output file, default a
# temporary file).
set -euo pipefail

cd "$(dirname "$0")/.."
COUNT="${COUNT:-5}"
BENCHTIME="${BENCHTIME:-1s}"
BENCHFLAGS="${BENCHFLAGS:-}" # extra test binary flags, e.g. "-test.cpu 1"
OUT="${OUT:-$(mktemp -t bench-scheduler.XXXXXX)}"

# One test binary, run COUNT times: each run measures builtin, livemigrate
# and builtin+2noop back to back, so a change in machine load hits all three
# alike (go test -count N would run each sub-benchmark N times in a row).
BIN="$(mktemp -t bench-scheduler-bin.XXXXXX)"
trap 'rm -f "$BIN"' EXIT
go test -c -o "$BIN" ./benchmarks/scheduler/
: > "$OUT"
# Other load on the machine moves wall-clock ns/op a lot: say how much there was.
load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
for _ in $(seq "$COUNT"); do
  # shellcheck disable=SC2086 # BENCHFLAGS is a list of flags
  "$BIN" -test.run '^$' -test.bench '^BenchmarkFilterScore$' -test.benchmem \
    -test.benchtime "$BENCHTIME" $BENCHFLAGS | tee -a "$OUT"
done

# median of the ns/op (or allocs/op) values of one sub-benchmark
median() { # $1 sub-benchmark name, $2 unit
  awk -v name="BenchmarkFilterScore/$1" -v unit="$2" '
    { sub(/-[0-9]+$/, "", $1) }
    $1 == name { for (i = 2; i < NF; i++) if ($(i+1) == unit) print $i }' "$OUT" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NaN"; exit }
      if (NR % 2) printf "%.0f\n", v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

builtin=$(median builtin ns/op)
livemigrate=$(median livemigrate ns/op)
floor=$(median builtin+2noop ns/op)
echo
printf 'load average (1, 5, 15 min): before %s, after %s; %s CPUs\n' \
  "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" "$(nproc 2>/dev/null || echo '?')"
printf 'median ns/op: builtin %s, livemigrate %s, builtin+2noop %s\n' "$builtin" "$livemigrate" "$floor"
printf 'median allocs/op: builtin %s, livemigrate %s, builtin+2noop %s\n' \
  "$(median builtin allocs/op)" "$(median livemigrate allocs/op)" "$(median builtin+2noop allocs/op)"
printf 'median cpu-ns/op: builtin %s, livemigrate %s, builtin+2noop %s\n' \
  "$(median builtin cpu-ns/op)" "$(median livemigrate cpu-ns/op)" "$(median builtin+2noop cpu-ns/op)"
awk -v l="$(median livemigrate cpu-ns/op)" -v b="$(median builtin cpu-ns/op)" \
  'BEGIN { printf "cpu-time ratio livemigrate/builtin (less sensitive to other load): %.2f\n", l / b }'
awk -v f="$floor" -v b="$builtin" 'BEGIN { printf "framework floor (two no-op plugins) builtin+2noop/builtin: %.2f\n", f / b }'
awk -v l="$livemigrate" -v b="$builtin" 'BEGIN { printf "ratio livemigrate/builtin: %.2f\n", l / b }'
