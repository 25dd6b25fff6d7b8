# Helpers shared by the bench/*.sh scripts; sourced from the repository
# root. Loopback only. Sets `work` (a temporary directory, removed on exit)
# and `pids` (processes killed on exit).

# Installs the apt packages that are missing.
bench_need() {
  local missing=() p sudo=""
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}

# Builds the release binary when absent.
bench_release() {
  [ -x target/release/sluice ] || cargo build --release --bin sluice
}

work=$(mktemp -d)
chmod 755 "$work" # nginx workers run as an unprivileged user
pids=()
bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap bench_cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# sluice_start NAME [ARGS...]: `sluice serve` on loopback port 0 with data
# in $work/NAME, stdout in $work/NAME.out (JSON logs go there too), stderr
# in $work/NAME.err. Waits for its listeners and sets NAME_http,
# NAME_admin, NAME_rtmp, NAME_quic and NAME_cert (the last three may be
# empty) and NAME_pid. Returns 1 when it exits first. All of them share one
# precompiled-plugin cache.
sluice_start() {
  local name=$1 pid line
  shift
  mkdir -p "$work/$name" "$work/plugin-cache"
  printf '[plugins]\ncache_dir = "%s"\n' "$work/plugin-cache" > "$work/$name.toml"
  target/release/sluice serve --config "$work/$name.toml" --data-dir "$work/$name" \
    --http 127.0.0.1:0 --rtmp 127.0.0.1:0 --admin 127.0.0.1:0 "$@" \
    > "$work/$name.out" 2> "$work/$name.err" &
  pid=$!
  pids+=("$pid")
  until grep -q 'listening admin=' "$work/$name.out" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  if [[ " $* " == *" --quic "* ]]; then
    until grep -q 'listening quic=' "$work/$name.out"; do sleep 0.1; done
  fi
  printf -v "${name}_pid" '%s' "$pid"
  for line in http admin rtmp quic; do
    printf -v "${name}_$line" '%s' \
      "$(grep -o "listening $line=[^ \"]*" "$work/$name.out" | head -1 | cut -d= -f2)"
  done
  printf -v "${name}_cert" '%s' \
    "$(grep -o 'cert-sha256=[0-9a-fA-F]*' "$work/$name.out" | head -1 | cut -d= -f2)"
}

# The sum of a counter (every label set) on an admin listener's /metrics.
metric_sum() {
  curl -sf "http://$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}

# api ADMIN METHOD PATH [JSON]: a management API call; fails on an error status.
api() {
  curl -sf -X "$2" "http://$1$3" ${4:+-d "$4"} -o /dev/null
}

# record_setup ADMIN CHANNEL FRAGMENT_MS: a running channel CHANNEL (key
# benchkey) recorded by program/asset/locator `show` (archive window PT1H).
record_setup() {
  api "$1" POST /api/v1/channels "{\"name\":\"$2\",\"input\":{\"key\":\"benchkey\"},\"fragment_ms\":$3}"
  api "$1" POST "/api/v1/channels/$2/start"
  api "$1" POST /api/v1/assets '{"name":"show"}'
  api "$1" POST "/api/v1/channels/$2/programs" '{"name":"show","asset":"show","archive_window":"PT1H"}'
  api "$1" POST "/api/v1/channels/$2/programs/show/start"
  api "$1" POST /api/v1/locators '{"id":"show","asset":"show"}'
}

# push SECONDS FRAGMENT_MS URL [-re]: a synthetic 1280x720 H.264 (one
# keyframe per fragment, 3 Mbit/s) + AAC stream over RTMP.
push() {
  local gop=$(($2 * 25 / 1000))
  ffmpeg -hide_banner -loglevel error -nostdin ${4:+"$4"} \
    -f lavfi -i "testsrc2=size=1280x720:rate=25" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$1" \
    -c:v libx264 -preset veryfast -b:v 3000k -maxrate 3000k -bufsize 6000k -g "$gop" \
    -keyint_min "$gop" -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 128k -f flv "$3"
}

# nginx_cache NAME LISTEN UPSTREAM [log]: nginx (one worker per core) with
# proxy_cache in front of a Sluice delivery listener, in $work/NAME;
# lifetimes from the origin's Cache-Control (else 10 minutes for a 200),
# one request upstream per object (proxy_cache_lock), X-Cache-Status on
# every answer. With `log`, every request goes to $work/NAME/access.log as
# `URI CACHE-STATUS UPSTREAM-BODY-BYTES`.
nginx_cache() {
  local dir="$work/$1" access="access_log off;"
  [ "${4:-}" != log ] || access="access_log $dir/access.log upstream;"
  mkdir -p "$dir/tmp" "$dir/cache"
  cat > "$dir/nginx.conf" <<EOF
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  log_format upstream '\$request_uri \$upstream_cache_status \$upstream_response_length';
  $access
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path $dir/tmp;
  proxy_temp_path $dir/tmp;
  fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp;
  scgi_temp_path $dir/tmp;
  proxy_cache_path $dir/cache levels=1:2 keys_zone=delivery:32m max_size=2g inactive=30m use_temp_path=off;
  upstream origin { server $3; keepalive 64; }
  server {
    listen $2;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache delivery;
      proxy_cache_valid 200 10m;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 15s;
      proxy_cache_use_stale updating;
      proxy_ignore_headers Expires;
      add_header X-Cache-Status \$upstream_cache_status always;
    }
  }
}
EOF
  chmod -R a+rwX "$dir"
  nginx -p "$dir" -e stderr -c "$dir/nginx.conf" -g 'daemon off;' 2> "$dir/stderr.log" &
  pids+=($!)
  until curl -s -o /dev/null "http://$2/"; do sleep 0.1; done
}

# Requests per second of one wrk run: rps SECONDS CONNECTIONS URL.
rps() {
  wrk -t2 -c"$2" -d"${1}s" "$3" | awk '/^Requests\/sec/ {print $2}'
}

# Interleaved wrk rounds, one side against nginx, and the report:
#   wrk_side_by_side LABEL BASE NGINX_BASE "HEADER" [PEER_LABEL] [AIM]
# Uses $rounds, $seconds, $connections, $segment, $playlist and $size.
# Each round first GETs the path once from BASE (packaging it into the
# response cache) and from the peer, then runs wrk on BASE and on the
# peer. Prints every round and the medians, with the ratio LABEL/PEER
# (PEER_LABEL, default nginx) and the aim (AIM, default ">= 1.0x").
wrk_side_by_side() {
  local label=$1 base=$2 nbase=$3 header=$4 peer=${5:-nginx} aim=${6:->= 1.0x} r what path a n
  local results=()
  for r in $(seq 1 "$rounds"); do
    for what in segment playlist; do
      path=${!what}
      curl -sf "$base/$path" -o /dev/null
      curl -sf "$nbase/$path" -o /dev/null
      a=$(rps "$seconds" "$connections" "$base/$path")
      n=$(rps "$seconds" "$connections" "$nbase/$path")
      results+=("$r $what $a $n")
    done
  done
  printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
label, header, peer, aim = sys.argv[1:5]
size, seconds, conns = (int(x) for x in sys.argv[5:])
rows = [l.split() for l in sys.stdin if l.strip()]
print(f"{header}, wrk -t2 -c{conns} -d{seconds}s, segment {size} bytes")
for r, what, a, n in rows:
    print(f"round {r} {what:8}: {label} {float(a):10.1f} req/s  {peer} {float(n):10.1f} req/s  "
          f"ratio {float(a) / float(n):.3f}x")
for what in ("segment", "playlist"):
    a = statistics.median(float(x[2]) for x in rows if x[1] == what)
    n = statistics.median(float(x[3]) for x in rows if x[1] == what)
    print(f"median {what:8}: {label} {a:10.1f} req/s  {peer} {n:10.1f} req/s  "
          f"ratio {label}/{peer} {a / n:.3f}x (aim {aim})")
' "$label" "$header" "$peer" "$aim" "$size" "$seconds" "$connections"
}
