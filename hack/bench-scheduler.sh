#!/usr/bin/env bash
# Runs the scheduler benchmarks (benchmarks/scheduler: one binding over 1,000
# member clusters through Karmada's framework runtime) and prints, as its last
# line, "ratio livemigrate/builtin: R" (median ns/op over median ns/op).
#
# Environment: COUNT (default 5), BENCHTIME (default 1s), OUT (raw output
# file, default a temporary file).
set -euo pipefail

cd "$(dirname "$0")/.."
COUNT="${COUNT:-5}"
BENCHTIME="${BENCHTIME:-1s}"
OUT="${OUT:-$(mktemp -t bench-scheduler.XXXXXX)}"

go test ./benchmarks/scheduler/ -run '^$' -bench '^BenchmarkFilterScore$' \
  -benchmem -count "$COUNT" -benchtime "$BENCHTIME" | tee "$OUT"

# median of the ns/op (or allocs/op) values of one sub-benchmark
median() { # $1 sub-benchmark name, $2 unit
  awk -v name="BenchmarkFilterScore/$1" -v unit="$2" '
    { sub(/-[0-9]+$/, "", $1) }
    $1 == name { for (i = 2; i < NF; i++) if ($(i+1) == unit) print $i }' "$OUT" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "NaN"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

builtin=$(median builtin ns/op)
livemigrate=$(median livemigrate ns/op)
floor=$(median builtin+2noop ns/op)
echo
printf 'median ns/op: builtin %s, livemigrate %s, builtin+2noop %s\n' "$builtin" "$livemigrate" "$floor"
printf 'median allocs/op: builtin %s, livemigrate %s, builtin+2noop %s\n' \
  "$(median builtin allocs/op)" "$(median livemigrate allocs/op)" "$(median builtin+2noop allocs/op)"
awk -v f="$floor" -v b="$builtin" 'BEGIN { printf "framework floor (two no-op plugins) builtin+2noop/builtin: %.2f\n", f / b }'
awk -v l="$livemigrate" -v b="$builtin" 'BEGIN { printf "ratio livemigrate/builtin: %.2f\n", l / b }'
