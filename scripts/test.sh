#!/usr/bin/env bash
# Runs every test of kurz on a fresh machine. Installs what the tests need first.
# Used by CI (.ci/run) and by developers alike.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

echo "== toolchain"
cargo --version
rustc --version

echo "== format"
cargo fmt --all --check

echo "== build (once, every target)"
cargo build --workspace --all-targets --locked

echo "== tests"
# Every test runs; none is ignored or skipped. Black-box suites start the real
# binary on free loopback ports.
cargo test --workspace --locked --no-fail-fast
