#!/usr/bin/env bash
# Cached delivery side by side: wrk against Sluice serving a packaged HLS
# segment (about 1 MB) and a media playlist from its response cache, and
# against nginx serving the very same bytes from files, same machine, same
# run, rounds interleaved. Prints requests/s for each and the ratios.
# Asserts nothing.
#
#   bench/delivery-vs-nginx.sh [SECONDS] [ROUNDS] [CONNECTIONS]   (defaults 10, 3, 32)
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

# --- Sluice, with a 10 s, 4 Mbit/s stream that has ended --------------------
s_rtmp=$(free_port); s_http=$(free_port); s_admin=$(free_port)
cat > "$work/sluice.toml" <<EOF
[[channels]]
name = "bench"
key = "benchkey"
EOF
target/release/sluice serve --config "$work/sluice.toml" --data-dir "$work/sluice-data" \
  --http "127.0.0.1:$s_http" --rtmp "127.0.0.1:$s_rtmp" --admin "127.0.0.1:$s_admin" \
  --log warn > "$work/sluice.out" 2> "$work/sluice.err" &
pids+=($!)
until grep -q "listening admin=" "$work/sluice.out" 2>/dev/null; do sleep 0.1; done
ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i "testsrc2=size=1280x720:rate=25" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 10 \
  -c:v libx264 -preset veryfast -b:v 4000k -maxrate 4000k -bufsize 8000k -g 50 -keyint_min 50 \
  -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 128k \
  -f flv "rtmp://127.0.0.1:$s_rtmp/live/bench/benchkey/main"

base="http://127.0.0.1:$s_http/preview/bench/preview.isml"
playlist="m3u8-cmaf/t1/index.m3u8"
until curl -sf "$base/$playlist" | grep -q '#EXT-X-ENDLIST'; do sleep 0.2; done
segment="m3u8-cmaf/t1/$(curl -sf "$base/$playlist" | grep '\.m4s$' | sed -n 2p)"

# --- nginx serving the same bytes from files --------------------------------
n_http=$(free_port)
mkdir -p "$work/www/m3u8-cmaf/t1" "$work/nginx-tmp"
curl -sf "$base/$playlist" -o "$work/www/$playlist"
curl -sf "$base/$segment" -o "$work/www/$segment"
cat > "$work/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  etag on;
  client_body_temp_path $work/nginx-tmp;
  proxy_temp_path $work/nginx-tmp;
  fastcgi_temp_path $work/nginx-tmp;
  uwsgi_temp_path $work/nginx-tmp;
  scgi_temp_path $work/nginx-tmp;
  types { application/vnd.apple.mpegurl m3u8; video/mp4 m4s; }
  server {
    listen 127.0.0.1:$n_http;
    root $work/www;
  }
}
EOF
nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;' &
pids+=($!)
until [ -s "$work/nginx.pid" ]; do sleep 0.1; done
nbase="http://127.0.0.1:$n_http"
size=$(stat -c %s "$work/www/$segment")
cmp <(curl -sf "$base/$segment") <(curl -sf "$nbase/$segment")

wrk_side_by_side sluice "$base" "$nbase" "cached delivery"
