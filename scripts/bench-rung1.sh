#!/usr/bin/env bash
# Rung-1 benchmark: builds a release binary, starts `crescendo serve` on a fresh data
# directory, seeds 200 users (20 follows each), 2,000 articles with tags, 2,000 favourites
# and 2,000 comments through the API, then drives `wrk -t1 -c32` at each workload and prints
# requests per second, latency, errors and the server's peak resident memory (VmHWM).
#
# The list and article workloads run three times each against the server, and once against
# `crescendo ceiling`: the same answers (the list page, and a few hundred seeded articles)
# served from memory through the same HTTP stack, the most this machine serves through it.
# Each run prints the fraction of that ceiling it reached, the figure that moves least
# between machines (rung 1's floors: list >= 0.45 of the ceiling, article >= 25,000 req/s in
# every run, peak memory <= 128 MiB). Every wrk run is warmed up for 3 s unrecorded first.
#
# usage: scripts/bench-rung1.sh [DURATION]   (default 15s per run; needs wrk: apt-get install wrk)
# The binary is built into $CARGO_TARGET_DIR when it is set, else target/.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15s}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --locked -q -p crescendo-cli
BIN=${CARGO_TARGET_DIR:-target}/release/crescendo
WORK=$(mktemp -d /tmp/crescendo-bench.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT

# Waits for `listening on URL` in $1 (written by the process $2) and prints URL.
listening() {
  for _ in $(seq 300); do
    grep -q '^listening on' "$1" && break
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  sed -n 's/^listening on //p' "$1"
}

"$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" > "$WORK/serve.out" 2> "$WORK/serve.log" &
PID=$!
PIDS+=("$PID")
URL=$(listening "$WORK/serve.out" "$PID")
[ -n "$URL" ] || { echo "server did not start:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
# `/metrics` is on the operators' listener (http.ops_listen), printed before the public one
OPS=$(sed -n 's/^ops listening on //p' "$WORK/serve.out")
echo "server pid $PID at $URL (operators: $OPS), data in $WORK/data"

"$BIN" bench --target "$URL" --seed-only --out "$WORK/seed"

# The ceiling's article workload reads the first 300 seeded articles (all of them are recorded);
# the server's reads all 2,000.
mkdir -p "$WORK/few"
head -n 300 "$WORK/seed/slugs.txt" > "$WORK/few/slugs.txt"
sed 's|^|/api/articles/|' "$WORK/few/slugs.txt" > "$WORK/article-paths.txt"
"$BIN" ceiling --from "$URL" --path '/api/articles?limit=20' --paths-from "$WORK/article-paths.txt" \
  --listen 127.0.0.1:0 > "$WORK/ceiling.out" 2> "$WORK/ceiling.log" &
CEILING_PID=$!
PIDS+=("$CEILING_PID")
CEILING=$(listening "$WORK/ceiling.out" "$CEILING_PID")
[ -n "$CEILING" ] || { echo "ceiling did not start:" >&2; cat "$WORK/ceiling.log" >&2; exit 1; }
echo "ceiling pid $CEILING_PID at $CEILING: $(cat "$WORK/ceiling.log")"

# One measured wrk run after 3 s unrecorded: prints NAME, req/s, p50, p99, non-2xx and, when
# CEILING_RPS is set, the fraction of it; leaves req/s in RPS.
run() {
  local name=$1; shift
  local out
  wrk -t1 -c32 -d3s "$@" > /dev/null
  out=$(wrk -t1 -c32 -d"$DURATION" --latency "$@")
  local p50 p99 non2xx fraction=""
  RPS=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  if [ -n "${CEILING_RPS:-}" ]; then
    fraction=$(awk -v r="$RPS" -v c="$CEILING_RPS" 'BEGIN { printf "%.2f of the ceiling", r / c }')
  fi
  printf '%-40s %10s req/s   p50 %-8s p99 %-8s non-2xx %-4s %s\n' "$name" "$RPS" "$p50" "$p99" "${non2xx:-0}" "$fraction"
}

echo
echo "workload (wrk -t1 -c32 -d$DURATION)"
CEILING_RPS=
run "ceiling: GET /api/articles?limit=20" "$CEILING/api/articles?limit=20"
CEILING_RPS=$RPS
for i in 1 2 3; do
  run "GET /api/articles?limit=20, run $i" "$URL/api/articles?limit=20"
done
CEILING_RPS=
run "ceiling: GET /api/articles/{slug}" -s bench/wrk/article.lua "$CEILING" -- "$WORK/few"
CEILING_RPS=$RPS
for i in 1 2 3; do
  run "GET /api/articles/{slug}, run $i" -s bench/wrk/article.lua "$URL" -- "$WORK/seed"
done
CEILING_RPS=
run "GET /api/articles/feed (signed in)" -s bench/wrk/feed.lua "$URL" -- "$WORK/seed"
run "90% reads / 10% writes" -s bench/wrk/mix.lua "$URL" -- "$WORK/seed"
echo
grep -E 'VmHWM|VmRSS' "/proc/$PID/status" | sed 's/^/server /'
grep -E 'VmHWM' "/proc/$CEILING_PID/status" | sed 's/^/ceiling /'
curl -s "$OPS/metrics" | grep -E '^crescendo_(db_queries_total|cache_(hits|misses|loads)_total)' | sed 's/^/metric /'
