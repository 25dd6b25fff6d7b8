#!/usr/bin/env bash
# What the metrics cost on the hot path: wrk against two Sluice nodes
# serving the same cached HLS segment (about 1 MB) and media playlist, one
# counting the delivery and plugin metrics (the default) and one with
# `metrics = false`, same machine, same run, rounds interleaved. Prints
# requests/s for each and the ratio on/off; the aim is a cost under 2 %
# (ratio >= 0.98x). Asserts nothing.
#
#   bench/metrics-cost.sh [SECONDS] [ROUNDS] [CONNECTIONS]   (defaults 10, 5, 32)
#
# Needs ffmpeg and wrk (installed with apt when absent) and a release
# build of sluice (built when absent). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-5}
connections=${3:-32}

source bench/lib.sh

bench_need ffmpeg wrk curl
bench_release

# --- One 10 s, 4 Mbit/s stream, pushed to both nodes -------------------------
ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i "testsrc2=size=1280x720:rate=25" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 10 \
  -c:v libx264 -preset veryfast -b:v 4000k -maxrate 4000k -bufsize 8000k -g 50 -keyint_min 50 \
  -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 128k -f flv "$work/source.flv"

start_node() { # NAME METRICS(true|false) → sets ${NAME}_http
  local name=$1 on=$2 rtmp http admin
  rtmp=$(free_port); http=$(free_port); admin=$(free_port)
  printf 'metrics = %s\n\n[[channels]]\nname = "bench"\nkey = "benchkey"\n' "$on" > "$work/$name.toml"
  target/release/sluice serve --config "$work/$name.toml" --data-dir "$work/$name-data" \
    --http "127.0.0.1:$http" --rtmp "127.0.0.1:$rtmp" --admin "127.0.0.1:$admin" \
    --log warn > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!)
  until grep -q "listening admin=" "$work/$name.out" 2>/dev/null; do sleep 0.1; done
  ffmpeg -hide_banner -loglevel error -nostdin -i "$work/source.flv" -c copy \
    -f flv "rtmp://127.0.0.1:$rtmp/live/bench/benchkey/main"
  printf -v "${name}_http" '%s' "$http"
}
start_node on true
start_node off false

playlist="m3u8-cmaf/t1/index.m3u8"
on_base="http://127.0.0.1:$on_http/preview/bench/preview.isml"
off_base="http://127.0.0.1:$off_http/preview/bench/preview.isml"
for b in "$on_base" "$off_base"; do
  until curl -sf "$b/$playlist" | grep -q '#EXT-X-ENDLIST'; do sleep 0.2; done
done
segment="m3u8-cmaf/t1/$(curl -sf "$on_base/$playlist" | grep '\.m4s$' | sed -n 2p)"
size=$(curl -sf "$on_base/$segment" | wc -c)
# The same bytes from both.
cmp <(curl -sf "$on_base/$segment") <(curl -sf "$off_base/$segment")

wrk_side_by_side metrics-on "$on_base" "$off_base" "cached delivery, metrics on vs off" \
  metrics-off ">= 0.98x: under 2 % cost"
