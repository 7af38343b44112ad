#!/usr/bin/env bash
# The node-scale benchmark (not part of the tests): builds the release provider, then runs
# examples/bench.rs against a real OpenBao and PostgreSQL and prints one Markdown table.
#   scripts/bench.sh             print the table
#   scripts/bench.sh --write     also replace the figures in BENCHMARKS.md
set -euo pipefail
cd "$(dirname "$0")/.."
BAO_BIN="$(./scripts/setup.sh | tail -n 1)"
export BAO_BIN
cargo build --release --locked --bin vault-csi-provider
export VCSP_PROVIDER_BIN="$PWD/target/release/vault-csi-provider"
out="$(mktemp)"
cargo run --release --locked --example bench | tee "$out"
if [ "${1:-}" = "--write" ]; then
  {
    sed '/^<!-- figures -->/q' BENCHMARKS.md
    echo
    echo "Run on $(date -u +%Y-%m-%d)."
    echo
    cat "$out"
  } > BENCHMARKS.md.new
  mv BENCHMARKS.md.new BENCHMARKS.md
fi
rm -f "$out"
