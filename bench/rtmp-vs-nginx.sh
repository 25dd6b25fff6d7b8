#!/usr/bin/env bash
# Ingest cost side by side: N concurrent RTMP publishers (ffmpeg -re -c copy
# of a 3 Mbit/s H.264 + AAC file) into Sluice and into nginx with
# libnginx-mod-rtmp (HLS on), same machine, same run. Prints CPU seconds per
# stream-minute for each server and the ratio. Asserts nothing.
#
#   bench/rtmp-vs-nginx.sh [STREAMS] [SECONDS]     (defaults 4 and 60)
#
# Needs ffmpeg, nginx and libnginx-mod-rtmp (installed with apt when absent)
# and a release build of sluice (built when absent). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-4}
seconds=${2:-60}

missing=()
for p in ffmpeg nginx libnginx-mod-rtmp; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
[ -x target/release/sluice ] || cargo build --release --bin sluice

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The source: 3 Mbit/s 1280x720 H.264 (2 s GOP) + AAC, long enough to loop.
ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i "testsrc2=size=1280x720:rate=25" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 30 \
  -c:v libx264 -preset veryfast -b:v 3000k -maxrate 3000k -bufsize 6000k -g 50 -keyint_min 50 \
  -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 128k -f flv "$work/source.flv"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU ticks (user + system) of processes, from /proc.
ticks() {
  local sum=0
  for p in "$@"; do
    if [ -r "/proc/$p/stat" ]; then
      read -r -a f < "/proc/$p/stat"
      sum=$((sum + f[13] + f[14]))
    fi
  done
  echo "$sum"
}

push_all() { # URL-prefix
  local ps=()
  for i in $(seq 1 "$streams"); do
    ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$work/source.flv" \
      -t "$seconds" -c copy -f flv "$1/s$i" &
    ps+=($!)
  done
  wait "${ps[@]}" || true
}

# --- Sluice -----------------------------------------------------------------
s_rtmp=$(free_port); s_http=$(free_port); s_admin=$(free_port)
cat > "$work/sluice.toml" <<EOF
[[channels]]
name = "bench"
key = "benchkey"
EOF
target/release/sluice serve --config "$work/sluice.toml" --data-dir "$work/sluice-data" \
  --http "127.0.0.1:$s_http" --rtmp "127.0.0.1:$s_rtmp" --admin "127.0.0.1:$s_admin" \
  --log warn > "$work/sluice.out" 2> "$work/sluice.err" &
spid=$!; pids+=("$spid")
until grep -q "listening admin=" "$work/sluice.out" 2>/dev/null; do sleep 0.1; done
# Each stream publishes into its own channel rendition; all formats are
# available from the one stored copy (HLS fMP4 packaged on request).
before=$(ticks "$spid")
push_all "rtmp://127.0.0.1:$s_rtmp/live/bench/benchkey"
after=$(ticks "$spid")
sluice_ticks=$((after - before))

# --- nginx-rtmp -------------------------------------------------------------
n_rtmp=$(free_port)
mkdir -p "$work/hls" "$work/nginx-tmp"
cat > "$work/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
rtmp {
  server {
    listen 127.0.0.1:$n_rtmp;
    application live {
      live on;
      hls on;
      hls_path $work/hls;
      hls_fragment 2s;
      hls_playlist_length 60s;
    }
  }
}
http {
  access_log off;
  client_body_temp_path $work/nginx-tmp;
  proxy_temp_path $work/nginx-tmp;
  fastcgi_temp_path $work/nginx-tmp;
  uwsgi_temp_path $work/nginx-tmp;
  scgi_temp_path $work/nginx-tmp;
}
EOF
nginx -c "$work/nginx.conf" -p "$work"
until [ -s "$work/nginx.pid" ]; do sleep 0.1; done
npids=$(pgrep -d ' ' -P "$(cat "$work/nginx.pid")" || true)
before=$(ticks "$(cat "$work/nginx.pid")" $npids)
push_all "rtmp://127.0.0.1:$n_rtmp/live"
after=$(ticks "$(cat "$work/nginx.pid")" $npids)
nginx_ticks=$((after - before))

hz=$(getconf CLK_TCK)
python3 - "$sluice_ticks" "$nginx_ticks" "$hz" "$streams" "$seconds" <<'PY'
import sys
s, n, hz, streams, seconds = (int(x) for x in sys.argv[1:])
stream_minutes = streams * seconds / 60
ss, ns = s / hz / stream_minutes, n / hz / stream_minutes
print(f"{streams} streams x {seconds} s, 3 Mbit/s each")
print(f"sluice      {ss:8.3f} CPU s per stream-minute")
print(f"nginx-rtmp  {ns:8.3f} CPU s per stream-minute (HLS on)")
print(f"ratio sluice/nginx-rtmp {ss / ns:.2f}x" if ns > 0 else "ratio: nginx used no CPU ticks")
PY
