#!/usr/bin/env bash
# Builds the test broker: tansu 0.6.0 from crates.io with infra/tansu-group-leader.patch
# applied to its group coordinator, installed as ~/.cargo/bin/tansu-kurz.
#
# Why a patch: tansu 0.6.0 wedges a consumer group whose leader dies. The dead leader
# is removed from the members but stays recorded as leader, so no member is ever
# handed an assignment again (a real Kafka coordinator re-elects). Kafka itself needs
# no patch; kurz/tests/scale_out/ and storage/tests/kafka.rs show the behaviour.
#
# About 15 minutes the first time on 2 cores; the binary is kept in ~/.cargo/bin and
# rebuilt only when the patch changes (its hash is stored next to it).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
patch="$here/infra/tansu-group-leader.patch"
bin="$HOME/.cargo/bin/tansu-kurz"
stamp="$bin.patch-sha256"
want="$(sha256sum "$patch" | cut -d' ' -f1)"
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
work="${TANSU_BUILD_DIR:-$HOME/.cache/kurz-tansu-build}"
mkdir -p "$work"
cd "$work"
rm -rf tansu-0.6.0 tansu-broker-0.6.0
for c in tansu tansu-broker; do
  curl -sSfL --retry 3 "https://static.crates.io/crates/$c/$c-0.6.0.crate" | tar xz
done
(cd tansu-broker-0.6.0 && git apply "$patch")
cd tansu-0.6.0
# The crate's own Cargo.lock pins every dependency; only tansu-broker's entry moves
# to the patched path.
# An explicit target dir: a CARGO_TARGET_DIR set for kurz must not move the binary.
cargo build --release --target-dir target --features dynostore,libsql --bin tansu \
  --config "patch.crates-io.tansu-broker.path=\"$work/tansu-broker-0.6.0\""
mkdir -p "$(dirname "$bin")"
install -m 0755 target/release/tansu "$bin"
echo "$want" > "$stamp"
