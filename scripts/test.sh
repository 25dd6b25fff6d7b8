#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the real peers the
# tests drive (ffmpeg, GStreamer, Chromium with hls.js, dash.js and
# shaka-player from npm), then format, lint, docs and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav chromium nginx systemd)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# yt-dlp (Smooth and HDS downloads), pinned.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "yt-dlp==2026.10.26"

# Browser players at the versions tests/browser/package-lock.json pins.
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# Object stores for tests/tests/storage_backends.rs, pinned: moto_server
# (S3) from PyPI, Azurite (Azure Blob) at the version
# tests/objstore/package-lock.json pins.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "moto[server]==5.2.5"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "prometheus-client==0.21.1"
(cd tests/objstore && npm ci --no-audit --no-fund --loglevel=error)

# rust-toolchain.toml pins the toolchain; rustup installs it (and the
# wasm32-wasip2 target) on first use.
rustup show active-toolchain >/dev/null

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace
# The example plugins (examples/*/): their own crates, built only against
# sdk/ and wit/, checked and tested like the rest; one shared target
# directory (the integration tests build them for wasm32-wasip2 there too).
for manifest in examples/*/Cargo.toml; do
  CARGO_TARGET_DIR=target/examples cargo fmt --check --manifest-path "$manifest"
  CARGO_TARGET_DIR=target/examples cargo clippy --manifest-path "$manifest" --all-targets -- -D warnings
  CARGO_TARGET_DIR=target/examples cargo test --manifest-path "$manifest"
done
# A short fuzz run of every parser (fuzz/) when a nightly toolchain is installed; skipped otherwise.
scripts/fuzz-smoke.sh
