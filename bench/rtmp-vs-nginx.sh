#!/usr/bin/env bash
# Ingest cost side by side: N concurrent RTMP publishers (ffmpeg -re -c copy
# of a 3 Mbit/s H.264 + AAC file) into Sluice and into nginx with
# libnginx-mod-rtmp (HLS on), same machine, same run, at the same time. Prints CPU seconds per
# stream-minute for each server and the ratio. Asserts nothing.
#
#   bench/rtmp-vs-nginx.sh [STREAMS] [SECONDS] [ROUNDS]   (defaults 4, 60, 3)
#
# Both servers ingest at the same time (STREAMS publishers each), ROUNDS
# times; each round's figures and the medians are printed.
#
# Needs ffmpeg, nginx and libnginx-mod-rtmp (installed with apt when absent)
# and a release build of sluice (built when absent). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-4}
seconds=${2:-60}
rounds=${3:-3}

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

push() { # URL-prefix: starts the publishers in the background
  for i in $(seq 1 "$streams"); do
    ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$work/source.flv" \
      -t "$seconds" -c copy -f flv "$1/s$i" &
    pushers+=($!)
  done
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
npids="$(cat "$work/nginx.pid") $(pgrep -d ' ' -P "$(cat "$work/nginx.pid")" || true)"

# --- Rounds: both servers ingest at once, so machine noise hits both -------
# Each Sluice stream publishes a rendition of one channel, packaged on
# request from the one stored copy.
hz=$(getconf CLK_TCK)
results=()
for _ in $(seq 1 "$rounds"); do
  # shellcheck disable=SC2086 # npids is a list of pids
  s0=$(ticks "$spid"); n0=$(ticks $npids)
  pushers=()
  push "rtmp://127.0.0.1:$s_rtmp/live/bench/benchkey"
  push "rtmp://127.0.0.1:$n_rtmp/live"
  wait "${pushers[@]}" || true
  # shellcheck disable=SC2086
  s1=$(ticks "$spid"); n1=$(ticks $npids)
  results+=("$((s1 - s0)) $((n1 - n0))")
done

printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
hz, streams, seconds = (int(x) for x in sys.argv[1:])
minutes = streams * seconds / 60
rows = [tuple(int(x) / hz / minutes for x in l.split()) for l in sys.stdin if l.strip()]
ratio = lambda s, n: f"{s / n:.2f}x" if n > 0 else "n/a"
print(f"{streams} streams x {seconds} s into each server, 3 Mbit/s each, both at once; "
      "CPU s per stream-minute")
for i, (s, n) in enumerate(rows, 1):
    print(f"round {i}: sluice {s:.3f}  nginx-rtmp (HLS on) {n:.3f}  ratio {ratio(s, n)}")
s = statistics.median(r[0] for r in rows)
n = statistics.median(r[1] for r in rows)
print(f"median:  sluice {s:.3f}  nginx-rtmp (HLS on) {n:.3f}  ratio sluice/nginx-rtmp {ratio(s, n)}")
' "$hz" "$streams" "$seconds"
