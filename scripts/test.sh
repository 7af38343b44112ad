#!/usr/bin/env bash
# Runs every test: installs what the tests need (OpenBao's bao binary, cargo-deny, ...),
# checks formatting and lints, the dependency tree's licences, bans and sources (deny.toml),
# then runs the unit and integration tests. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

BAO_BIN="$(./scripts/setup.sh | tail -n 1)"
export BAO_BIN
echo "test: using $("$BAO_BIN" version | head -n 1)"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo deny --locked check --hide-inclusion-graph licenses bans sources
cargo test --all-targets --locked
