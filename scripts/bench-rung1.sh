#!/usr/bin/env bash
# Rung-1 benchmark: builds a release binary, starts `crescendo serve` on a fresh data
# directory, seeds 200 users (20 follows each), 2,000 articles with tags, 2,000 favourites
# and 2,000 comments through the API, then drives `wrk -t1 -c32` at each workload and prints
# requests per second, latency, errors and the server's peak resident memory. Each workload
# is warmed up for 3 s before the measured run.
#
# usage: scripts/bench-rung1.sh [DURATION]   (default 15s per workload; needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15s}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --locked -q
BIN=target/release/crescendo
WORK=$(mktemp -d /tmp/crescendo-bench.XXXXXX)
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" > "$WORK/serve.out" 2> "$WORK/serve.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do grep -q '^listening on' "$WORK/serve.out" && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")
[ -n "$URL" ] || { echo "server did not start:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
echo "server pid $PID at $URL, data in $WORK/data"

"$BIN" bench --target "$URL" --seed-only --out "$WORK/seed"

# Each workload first runs 3 s unrecorded (fills caches, lets the seed's writes settle),
# then for DURATION measured.
run() {
  local name=$1; shift
  local out
  wrk -t1 -c32 -d3s "$@" > /dev/null
  out=$(wrk -t1 -c32 -d"$DURATION" --latency "$@")
  local rps p50 p99 non2xx
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '%-44s %10s req/s   p50 %-8s p99 %-8s non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

echo
echo "workload (wrk -t1 -c32 -d$DURATION)                 throughput"
run "GET /api/articles?limit=20 (anonymous)" "$URL/api/articles?limit=20"
run "GET /api/articles/{slug}" -s bench/wrk/article.lua "$URL" -- "$WORK/seed"
run "GET /api/articles/feed (signed in)" -s bench/wrk/feed.lua "$URL" -- "$WORK/seed"
run "90% reads / 10% writes" -s bench/wrk/mix.lua "$URL" -- "$WORK/seed"
echo
grep -E 'VmHWM|VmRSS' /proc/$PID/status | sed 's/^/server /'
curl -s "$URL/metrics" | grep -E '^crescendo_(db_queries_total|cache_(hits|misses|loads)_total)' | sed 's/^/metric /'
