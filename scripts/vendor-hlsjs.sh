#!/usr/bin/env bash
# Refreshes the hls.js build the preview page embeds (host/assets/preview/):
# `npm pack` of hls.js at VERSION (default: the newest 1.x) in a scratch
# directory, then dist/hls.min.js and its LICENSE copied in, unchanged, and
# the version and SHA-256 written into host/assets/preview/README.md.
#
#   scripts/vendor-hlsjs.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
spec="hls.js@${1:-1}"
dest=host/assets/preview
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent "$spec" >/dev/null)
tar -xzf "$scratch"/hls.js-*.tgz -C "$scratch"
version=$(node -p "require('$scratch/package/package.json').version")
cp "$scratch/package/dist/hls.min.js" "$dest/hls.min.js"
cp "$scratch/package/LICENSE" "$dest/hls.js-LICENSE"
sum=$(sha256sum "$dest/hls.min.js" | cut -d' ' -f1)
sed -i -e "s/^\\( *\\)- version: .*/\\1- version: $version/" \
       -e "s/^\\( *\\)- sha256 of hls.min.js: .*/\\1- sha256 of hls.min.js: $sum/" "$dest/README.md"
echo "hls.js $version ($sum) in $dest"
