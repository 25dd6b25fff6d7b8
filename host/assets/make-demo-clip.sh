#!/bin/sh
# Regenerates demo.flv, the built-in test source of `sluice serve --demo`:
# 8 s of H.264 (High, B-frames, a keyframe every 2 s) and AAC-LC 48 kHz
# stereo. Kept in the repository so a build needs no ffmpeg.
set -e
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=426x240:rate=25" \
  -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000" \
  -t 8 -map 0:v -map 1:a \
  -c:v libx264 -profile:v high -preset veryfast -b:v 250k -maxrate 300k -bufsize 600k \
  -g 50 -keyint_min 50 -sc_threshold 0 -bf 2 -pix_fmt yuv420p \
  -c:a aac -b:a 64k -ar 48000 -ac 2 \
  -f flv demo.flv
