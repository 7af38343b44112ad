#!/usr/bin/env bash
# Runs every test: installs what the tests need (OpenBao's bao binary), checks formatting
# and lints, then runs the unit and integration tests. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

BAO_BIN="$(./scripts/setup.sh | tail -n 1)"
export BAO_BIN
echo "test: using $("$BAO_BIN" version | head -n 1)"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
