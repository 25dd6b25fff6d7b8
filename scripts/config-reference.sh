#!/usr/bin/env bash
# Regenerates docs/configuration.md from `sluice config default` (the
# config types' doc comments and defaults); tests/tests/cli.rs fails when
# the committed file differs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin sluice
{
  cat <<'HEAD'
# Configuration reference

Every key of the config file (`sluice serve --config FILE`), with its
default, what it does, and the flag and `SLUICE_*` variable that override
it. Flags win over variables, which win over the file; unknown keys are
refused. This page is the output of `sluice config default` (regenerate it
with `scripts/config-reference.sh`; a test fails when it is stale), which
prints the same from the binary you run, so that

```sh
sluice config default > sluice.toml
```

starts a config file that loads as the defaults.

```toml
HEAD
  target/debug/sluice config default
  echo '```'
} > docs/configuration.md
