#!/usr/bin/env bash
# Cached delivery at the edge tier side by side: wrk against a Sluice edge
# (--upstream http://INGEST) and against nginx with proxy_cache in front of
# the same ingest node's delivery listener, both serving the same recorded
# asset (program stopped: on demand) from their caches, same URLs (an HLS
# fMP4 segment of about 800 KB and a media playlist), same machine, same
# run, rounds interleaved. Prints requests/s for each and the ratios
# edge/nginx (aim: at least 1.0x). Asserts nothing.
#
#   bench/tier-edge-vs-nginx.sh [SECONDS] [ROUNDS] [CONNECTIONS]   (defaults 10, 3, 32)
#
# Needs ffmpeg, nginx and wrk (installed with apt when absent) and a release
# build of sluice (built when absent). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
connections=${3:-32}
source bench/lib.sh

bench_need ffmpeg nginx wrk curl
bench_release

# --- The ingest node, with 10 s recorded into asset `show` ------------------
sluice_start ingest --log warn
record_setup "$ingest_admin" ch1 2000
push 10 2000 "rtmp://$ingest_rtmp/live/ch1/benchkey/main"
until curl -sf "http://$ingest_admin/api/v1/assets/show" |
  python3 -c 'import json,sys; a=json.load(sys.stdin); sys.exit(not (a["duration_ms"] >= 8000 and a["pending"] == 0))'; do
  sleep 0.2
done
api "$ingest_admin" POST /api/v1/channels/ch1/programs/show/stop

# --- The edge, and nginx caching the ingest node's delivery answers ---------
sluice_start edge --upstream "http://$ingest_http" --log warn
nginx_addr="127.0.0.1:$(free_port)"
nginx_cache nginx "$nginx_addr" "$ingest_http"

edge="http://$edge_http/show/show.ism"
nginx="http://$nginx_addr/show/show.ism"
playlist="m3u8-cmaf/t1/index.m3u8"
until curl -sf "$edge/$playlist" | grep -q '#EXT-X-ENDLIST'; do sleep 0.2; done
segment="m3u8-cmaf/t1/$(curl -sf "$edge/$playlist" | grep '\.m4s$' | sed -n 2p)"
size=$(curl -sf "$edge/$segment" | wc -c)
# Warm both caches; the same bytes from both.
for what in segment playlist; do
  path=${!what}
  for _ in 1 2 3; do
    curl -sf "$edge/$path" -o /dev/null
    curl -sf "$nginx/$path" -o /dev/null
  done
  cmp <(curl -sf "$edge/$path") <(curl -sf "$nginx/$path")
  status=$(curl -sf -o /dev/null -D - "$nginx/$path" | tr -d '\r' | awk 'tolower($1) == "x-cache-status:" { print $2 }')
  echo "nginx cache for the $what: $status"
done

wrk_side_by_side edge "$edge" "$nginx" \
  "cached delivery of a recorded asset; edge = sluice --upstream the ingest node, nginx = proxy_cache in front of it"
