#!/usr/bin/env bash
# Upstream efficiency of the edge tier: bytes an edge pulls from upstream
# per payload byte ingested, with every format requested at the edge, next
# to the same figure for a shield-only setup that packages at the ingest
# node (nginx proxy_cache in front of the ingest node's delivery URLs),
# same run, same stream. Asserts nothing.
#
#   bench/tier-efficiency.sh [SECONDS] [FRAGMENT_MS]   (defaults 60, 2000)
#
# ffmpeg pushes a synthetic 3 Mbit/s H.264 + AAC stream in real time (-re)
# into channel ch1, recorded by program `show` (locator `show`). While it
# runs, bench/crawl.py plays /show/show.ism from the edge and from nginx in
# every format (HLS fMP4 and MPEG-TS, DASH csf and cmaf, Smooth, HDS):
# every manifest once per fragment duration and every init and media
# segment it lists, once; after the program stops, everything once more, as
# players of the finished asset would.
#
# Edge: sluice_edge_upstream_bytes_total (every body byte from upstream:
# fragment objects with their headers and sample tables, timeline documents,
# locator records) over the ingest node's sluice_ingest_bytes_total (sample
# payload bytes received). Aim: 1.0, one copy per edge. nginx: the
# $upstream_response_length of what it fetched from the ingest node (every
# format packaged there, each its own copy) over the same ingest bytes.
#
# Needs ffmpeg and nginx (installed with apt when absent) and a release
# build of sluice (built when absent). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
fragment_ms=${2:-2000}
source bench/lib.sh

bench_need ffmpeg nginx curl
bench_release

sluice_start ingest --log warn
record_setup "$ingest_admin" ch1 "$fragment_ms"
sluice_start edge --upstream "http://$ingest_http" --log warn
nginx_addr="127.0.0.1:$(free_port)"
nginx_cache nginx "$nginx_addr" "$ingest_http" log

push "$seconds" "$fragment_ms" "rtmp://$ingest_rtmp/live/ch1/benchkey/main" -re &
pusher=$!
pids+=("$pusher")
# Players join once the asset has media.
until curl -sf -o /dev/null "http://$ingest_http/show/show.ism/Manifest"; do sleep 0.2; done
python3 bench/crawl.py live "$work/stop" "$fragment_ms" "$edge_http" "$nginx_addr" \
  > "$work/crawl-live.txt" &
crawler=$!
pids+=("$crawler")
wait "$pusher"
# The last fragments, then the end of the program.
sleep $((2 * fragment_ms / 1000 + 1))
api "$ingest_admin" POST /api/v1/channels/ch1/programs/show/stop
touch "$work/stop"
wait "$crawler"
for h in "$edge_http" "$nginx_addr"; do
  until curl -sf "http://$h/show/show.ism/m3u8-cmaf/t1/index.m3u8" | grep -q '#EXT-X-ENDLIST'; do
    sleep 0.5
  done
done
python3 bench/crawl.py ended - 0 "$edge_http" "$nginx_addr" > "$work/crawl-ended.txt"
sleep 1 # nginx writes its log line after the response

ingest_bytes=$(metric_sum "$ingest_admin" sluice_ingest_bytes_total)
fragments=$(metric_sum "$ingest_admin" sluice_fragments_total)
edge_bytes=$(metric_sum "$edge_admin" sluice_edge_upstream_bytes_total)
edge_requests=$(metric_sum "$edge_admin" sluice_edge_upstream_requests_total)
objects=$(curl -sf "http://$ingest_admin/metrics" |
  awk '$1 == "sluice_tier_requests_total{kind=\"fragment\"}" { print $2 }')
read -r nginx_bytes nginx_requests < <(awk '
  index($1, "/show/") == 1 {
    # One length per upstream response ("123", "-", or "123, 456" after a retry).
    for (f = 3; f <= NF; f++) { gsub(/[,:]/, "", $f); if ($f ~ /^[0-9]+$/) { bytes += $f; requests++ } }
  }
  END { printf "%d %d\n", bytes, requests }' "$work/nginx/access.log")

cat "$work/crawl-live.txt" "$work/crawl-ended.txt" | python3 -c '
import sys
(seconds, fragment_ms, edge, nginx, ingest, fragments, objects,
 edge_bytes, edge_requests, nginx_bytes, nginx_requests) = sys.argv[1:]
ingest, edge_bytes, nginx_bytes = int(ingest), int(edge_bytes), int(nginx_bytes)
who = {edge: "edge", nginx: "nginx"}
print(f"upstream efficiency, {seconds} s of {fragment_ms} ms fragments (3 Mbit/s, ffmpeg -re), "
      "every format played live and after the end; loopback")
for line in sys.stdin:
    mode, host, requests, body, failed = line.split()
    print(f"players ({mode:5}) at {who[host]:5}: {requests} requests, {int(body) / 1e6:.1f} MB, "
          f"{failed} not 200")
print(f"ingested: {ingest} payload bytes, {fragments} fragments (video and audio)")
print(f"edge  (sluice --upstream, packages at the edge): {edge_bytes} bytes upstream in "
      f"{edge_requests} requests ({objects} fragment objects); ratio {edge_bytes / ingest:.3f}  "
      "(aim 1.0: one copy per edge)")
print(f"nginx (proxy_cache, packaging at the ingest node): {nginx_bytes} bytes upstream in "
      f"{nginx_requests} requests; ratio {nginx_bytes / ingest:.3f}")
print(f"nginx/edge: {nginx_bytes / edge_bytes:.2f}x the upstream bytes")
' "$seconds" "$fragment_ms" "$edge_http" "$nginx_addr" "$ingest_bytes" "$fragments" \
  "${objects:-0}" "$edge_bytes" "$edge_requests" "$nginx_bytes" "$nginx_requests"
