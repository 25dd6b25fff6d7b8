#!/usr/bin/env bash
# Fragment availability at the edge: the time from a fragment being cut on
# the ingest node to it being servable at an edge, over each upstream
# transport, same run, same stream: an edge pulling straight from the
# ingest node (--upstream http://INGEST), one pulling through the nginx
# shield (examples/deploy/shield.conf, --upstream http://SHIELD) and, when
# this build has the QUIC upstream transport, one over QUIC
# (--upstream quic://INGEST?cert-sha256=HEX). Prints p50, p99, max and the
# count per transport, and the ratio shield/direct. Asserts nothing.
#
#   bench/tier-availability.sh [SECONDS] [FRAGMENT_MS]   (defaults 60, 2000; 1000 or 2000)
#
# Servable means listed in the edge's timeline AND its payload in the
# edge's cache (the follower's prefetch of a newly listed fragment
# returned). Both ends are debug events of target `sluice::timing`
# ("fragment cut" where the ingest node adds a fragment to the channel
# timeline, "fragment servable" where the edge's prefetch completes), read
# from JSON logs (--log-format json) stamped by the same machine clock and
# joined on (channel, track, start). Counted are the fragments cut after an
# edge made a fragment of every track servable (steady state: its follower
# holds a blocking request); "count N of M" says how many of those became
# servable. An edge prefetches only while the presentation is live, so the
# last fragments of a stream (listed once it ended) are fetched on demand
# and never servable in this sense. A blocking answer comes once every
# track has media past the edge's cut, so over HTTP a video fragment also
# waits for the audio fragment cut at the same boundary; over QUIC the
# pushed fragment is listed as it arrives ("fragment servable" then), and
# the JSON logs also hold "fragment push" (ingest node: push opened) and
# "fragment pushed" (edge: object arrived) for a closer look.
#
# ffmpeg pushes a synthetic 3 Mbit/s H.264 + AAC stream in real time (-re),
# one keyframe per fragment: two measurements (video, audio) per fragment
# duration. Aim: p99 under 20 ms on loopback over QUIC.
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

timing=(--log-format json --log 'info,sluice::timing=debug')

# --- The ingest node (HTTP/3 on, for the QUIC upstream), channel ch1 -------
sluice_start ingest --quic 127.0.0.1:0 "${timing[@]}"
api "$ingest_admin" POST /api/v1/channels \
  "{\"name\":\"ch1\",\"input\":{\"key\":\"benchkey\"},\"fragment_ms\":$fragment_ms}"
api "$ingest_admin" POST /api/v1/channels/ch1/start

# --- The shield ------------------------------------------------------------
shield="127.0.0.1:$(free_port)"
mkdir -p "$work/shield/logs" "$work/shield/tmp" "$work/shield/cache"
sed -e "s/@LISTEN@/$shield/" -e "s/@UPSTREAM@/$ingest_http/" examples/deploy/shield.conf \
  > "$work/shield/shield.conf"
chmod -R a+rwX "$work/shield"
nginx -p "$work/shield" -e stderr -c "$work/shield/shield.conf" -g 'daemon off;' \
  2> "$work/shield/stderr.log" &
pids+=($!)
until curl -s -o /dev/null "http://$shield/_tier/v1/health"; do sleep 0.1; done

# --- The edges ---------------------------------------------------------------
edges=(direct shield)
labels=("edge --upstream http://INGEST" "edge --upstream http://SHIELD (nginx)")
sluice_start direct --upstream "http://$ingest_http" "${timing[@]}"
sluice_start shield --upstream "http://$shield" "${timing[@]}"
quic_note=""
if [ -z "$ingest_quic" ]; then
  quic_note="quic: not available in this build (the ingest node reported no QUIC listener)"
elif sluice_start quic --upstream "quic://$ingest_quic?cert-sha256=$ingest_cert" "${timing[@]}"; then
  edges+=(quic)
  labels+=("edge --upstream quic://INGEST")
elif grep -qi quic "$work/quic.err"; then
  quic_note="quic: not available in this build"
else
  quic_note="quic: the edge did not start: $(tail -1 "$work/quic.err")"
fi

# A viewer per edge keeps the preview followed (an edge stops following a
# presentation nobody asks for); it reads the playlist only, so fragment
# payloads reach the edge's cache by its prefetch alone.
for e in "${edges[@]}"; do
  addr_var="${e}_http"
  url="http://${!addr_var}/preview/ch1/preview.isml/Manifest(format=m3u8-cmaf)"
  (while :; do curl -s -o /dev/null "$url" || true; sleep 1; done) &
  pids+=($!)
done
sleep 2

push "$seconds" "$fragment_ms" "rtmp://$ingest_rtmp/live/ch1/benchkey/main" -re
# The last fragments reach the edges within a few fragment durations.
sleep $((3 * fragment_ms / 1000 + 1))

args=("$seconds" "$fragment_ms" "$work/ingest.out")
for i in "${!edges[@]}"; do
  args+=("${edges[$i]}" "${labels[$i]}" "$work/${edges[$i]}.out")
done
QUIC_NOTE=$quic_note python3 - "${args[@]}" <<'EOF'
import json, os, sys
from datetime import datetime, timezone

seconds, fragment_ms, ingest = sys.argv[1:4]
edges = [sys.argv[i:i + 3] for i in range(4, len(sys.argv), 3)]

def stamp(ts):
    # RFC 3339 with any number of fractional digits, "Z" or an offset.
    date, _, rest = ts.partition(".")
    frac = ""
    while rest and rest[0].isdigit():
        frac, rest = frac + rest[0], rest[1:]
    t = datetime.fromisoformat(date + ("+00:00" if rest in ("", "Z") else rest))
    return t.replace(tzinfo=t.tzinfo or timezone.utc).timestamp() + float("0." + (frac or "0"))

def events(path, message):
    out = {}
    with open(path) as f:
        for line in f:
            if '"sluice::timing"' not in line:
                continue
            v = json.loads(line)
            fields = v.get("fields", {})
            if fields.get("message") != message:
                continue
            key = (str(fields["channel"]), int(fields["track"]), int(fields["start"]))
            out.setdefault(key, stamp(v["timestamp"]))
    return out

def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))]

cut = events(ingest, "fragment cut")
print(f"fragment availability: cut at the ingest node -> servable at an edge (listed and "
      f"payload cached), {seconds} s of {fragment_ms} ms fragments, ffmpeg -re, loopback; "
      f"{len(cut)} fragments cut (video and audio)")
if not cut:
    print("no timing events: target/release/sluice predates them; "
          "rebuild with cargo build --release --bin sluice")
p = {}
for name, label, path in edges:
    servable = events(path, "fragment servable")
    # Steady state: from when a fragment of every track was servable.
    firsts = {}
    for (_, track, _), t in servable.items():
        firsts[track] = min(t, firsts.get(track, t))
    tracks = {track for (_, track, _) in cut}
    first = max(firsts.values()) if tracks and tracks <= firsts.keys() else None
    lat = [(servable[k] - t) * 1000 for k, t in cut.items()
           if first is not None and t > first and k in servable]
    considered = sum(1 for t in cut.values() if first is not None and t > first)
    if not lat:
        print(f"{name:6} ({label}): no fragment became servable")
        continue
    p[name] = (pct(lat, 50), pct(lat, 99))
    print(f"{name:6} {'(' + label + ')':40}: p50 {p[name][0]:7.1f} ms  p99 {p[name][1]:7.1f} ms  "
          f"max {max(lat):7.1f} ms  count {len(lat)} of {considered}")
if os.environ.get("QUIC_NOTE"):
    print(os.environ["QUIC_NOTE"])
if "direct" in p and "shield" in p:
    d, s = p["direct"], p["shield"]
    print(f"ratio shield/direct: p50 {s[0] / d[0]:.2f}x  p99 {s[1] / d[1]:.2f}x")
if "quic" in p:
    print(f"aim: quic p99 under 20 ms on loopback; measured {p['quic'][1]:.1f} ms")
else:
    print("aim: quic p99 under 20 ms on loopback (not measured here)")
EOF
