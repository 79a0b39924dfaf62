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

echo "== system packages the tests run against"
# Real protocol peers, never fakes: Redis (Debian's redis-server) and docker-compose
# (validates docker-compose.yml without an engine).
need_pkgs=()
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v docker-compose >/dev/null || need_pkgs+=(docker-compose)
command -v promtool >/dev/null || need_pkgs+=(prometheus)
# TLS tests: certificates made with openssl, a TLS terminator (socat) in front of the
# Kafka and CQL peers; librdkafka links the system OpenSSL.
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v socat >/dev/null || need_pkgs+=(socat)
dpkg -s libssl-dev >/dev/null 2>&1 || need_pkgs+=(libssl-dev)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
# nm: the embedded-only build is checked for backend symbols.
command -v nm >/dev/null || need_pkgs+=(binutils)
# The zombie test cuts a process off the network: a network namespace (iproute2).
command -v ip >/dev/null || need_pkgs+=(iproute2)
# scripts/tansu.sh fetches the broker's source from crates.io.
command -v curl >/dev/null || need_pkgs+=(curl ca-certificates)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# The distribution starts redis-server as a service on install; the tests start their
# own instances on free ports and do not use it.
redis-server --version
docker-compose version --short
promtool --version | head -1

echo "== a Kafka-protocol broker (tansu 0.6.0, patched), built once and kept in ~/.cargo/bin"
# About 15 minutes the first time on 2 cores; later runs find it in ~/.cargo/bin.
# scripts/tansu.sh says why it carries a patch.
export PATH="$HOME/.cargo/bin:$PATH"
scripts/tansu.sh
tansu-kurz --version || true

echo "== format"
cargo fmt --all --check
(cd fuzz && cargo fmt --check)

echo "== lints: clippy over every target, warnings are errors"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== the embedded-only kurz: without its default features it links no Kafka, Scylla or Redis"
# Built before the full build below, which then puts the full binary back in place.
target="${CARGO_TARGET_DIR:-target}"
cargo clippy --locked --no-default-features -p kurz -- -D warnings
cargo build --locked --no-default-features -p kurz
cp "$target/debug/kurz" "$target/kurz-embedded-only"
# librdkafka is linked statically (rdkafka-sys), so ldd would not show it: count symbols.
backends=('rd_kafka_new' '[ <]scylla::' '[ <]redis::')
symbols() { nm -C "$1" | grep -cE "$2" || true; }
for p in "${backends[@]}"; do
  n="$(symbols "$target/kurz-embedded-only" "$p")"
  [ "$n" -eq 0 ] || { echo "the embedded-only kurz has $n symbols matching '$p'"; exit 1; }
done
ls -l "$target/kurz-embedded-only"
# A backend left out is a configuration error at start (storage/src/lib.rs).
cargo test --locked --no-default-features -p kurz-storage --lib

echo "== build (once, every target)"
cargo build --workspace --all-targets --locked
# The full kurz has each of them, so the check above can fail.
for p in "${backends[@]}"; do
  n="$(symbols "$target/debug/kurz" "$p")"
  [ "$n" -gt 0 ] || { echo "the default kurz has no symbol matching '$p': the embedded-only check proves nothing"; exit 1; }
done

echo "== tests"
# Every test runs; none is ignored or skipped. Black-box suites start the real
# binary on free loopback ports.
cargo test --workspace --locked --no-fail-fast

echo "== the black-box suites again, with the hot cache on Redis"
KURZ_TEST_CACHE=redis cargo test --locked -p kurz --test contract --test concurrency --test durability --test malformed --test accounts

echo "== and with the event log on Kafka (tansu)"
KURZ_TEST_LOG=kafka cargo test --locked -p kurz --test contract --test concurrency --test durability --test malformed --test accounts

echo "== and the contract suite against a split deployment: two processes of each role"
echo "   behind a round-robin front, over tansu and the CQL double"
KURZ_TEST_DEPLOY=split cargo test --locked -p kurz --test contract

echo "== fuzzing: every decoder of outside bytes, ${KURZ_FUZZ_SECONDS:=20} s each (README: Fuzzing)"
# cargo-fuzz on the stable toolchain, without a sanitizer (the code under test is safe
# Rust: what a fuzzer finds here is a panic, an overflow or a broken invariant), with
# debug assertions and overflow checks on. Seeds and kept crash inputs are replayed
# first; new inputs go to a throwaway corpus.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
(
  cd fuzz
  cargo fuzz build --sanitizer none
  for t in $(cargo fuzz list); do
    corpus="$(mktemp -d)"
    dirs=(seeds/"$t")
    [ -d regressions/"$t" ] && dirs+=(regressions/"$t")
    log="$corpus.log"
    if ! cargo fuzz run --sanitizer none "$t" "$corpus" "${dirs[@]}" -- \
      -max_total_time="$KURZ_FUZZ_SECONDS" -max_len=4096 >"$log" 2>&1; then
      tail -n 80 "$log"
      echo "fuzz target $t failed: the input is in fuzz/artifacts/$t (keep it in fuzz/regressions/$t once fixed)"
      exit 1
    fi
    echo "$t: $(grep -E '^Done' "$log")"
    rm -rf "$corpus" "$log"
  done
)
