#!/usr/bin/env bash
# A short fuzz run of every target in fuzz/ from its committed seed corpus.
#
# Needs a nightly toolchain (rustup) and cargo-fuzz; installs cargo-fuzz
# when nightly is there and it is not. Without nightly it says so and exits
# 0. Exits non-zero when a target finds a crash or a timeout (the input is
# left in fuzz/artifacts/<target>/) or does not build.
#
#   scripts/fuzz-smoke.sh                 # every target, 20 s each
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh amf0
set -euo pipefail
cd "$(dirname "$0")/.."
exec </dev/null

seconds="${FUZZ_SECONDS:-20}"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(rtmp_chunk amf0 flv_tags fmp4 fragment_object tier_frame ts_ingest)

if ! command -v rustup >/dev/null 2>&1 || ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz-smoke: no nightly toolchain (rustup toolchain install nightly); skipped"
  exit 0
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz"
  # Outside the repository, so that rust-toolchain.toml does not apply.
  (cd / && cargo +nightly install cargo-fuzz --locked --quiet)
fi

# The checks' own tests, and the committed seeds are what the code writes.
cargo +nightly test --quiet --manifest-path fuzz/Cargo.toml
cargo +nightly fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  echo "fuzz-smoke: $t for ${seconds}s"
  # New inputs go to the scratch corpus; the seeds are read, not written.
  if ! cargo +nightly fuzz run "$t" "$scratch/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    grep -A 3 -E '^thread .* panicked|^==[0-9]+== ERROR' "$scratch/$t.log" || true
    grep -E 'Test unit written to|^artifact_prefix' "$scratch/$t.log" || tail -n 40 "$scratch/$t.log"
    echo "fuzz-smoke: $t FAILED (reproduce: cargo +nightly fuzz run $t fuzz/artifacts/$t/<file>)"
    failed+=("$t")
  else
    grep -E '^stat::number_of_executed_units' "$scratch/$t.log" | sed "s/^/fuzz-smoke: $t /" || true
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz-smoke: failed: ${failed[*]}"
  exit 1
fi
echo "fuzz-smoke: ok (${targets[*]})"
