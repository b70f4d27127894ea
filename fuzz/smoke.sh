#!/usr/bin/env bash
# Runs every fuzz target for a short time (default 20 s each). cargo-fuzz needs nightly
# features; RUSTC_BOOTSTRAP=1 enables them on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
mkdir -p corpus
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  if [ -d "seeds/$target" ]; then cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true; fi
  echo "--- fuzz $target for ${seconds}s"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 3
done
# Every verify_presets seed is a request that verifies (the target checks it when asked).
echo "--- verify_presets: each seed verifies"
HOOKGUARD_FUZZ_SEEDS_VERIFY=1 cargo fuzz run verify_presets seeds/verify_presets/* 2>&1 | grep -c '^Executed'
