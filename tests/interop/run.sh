#!/usr/bin/env bash
# Interop with the providers' official SDKs (see interop.py, interop.mjs): installs them
# from requirements.txt and package-lock.json into tests/interop/.venv and
# tests/interop/node_modules (never system-wide; reused when the pins did not change),
# builds the `interop` example and checks both directions.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

python="${PYTHON:-python3}"
stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "--- installing Python SDKs into tests/interop/.venv"
  rm -rf .venv
  "$python" -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check --no-input -r requirements.txt
  echo "$want" > "$stamp"
fi

lock="node_modules/.package-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -d node_modules ] || [ "$(cat "$lock" 2>/dev/null)" != "$want" ]; then
  echo "--- installing Node SDKs into tests/interop/node_modules"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$lock"
fi

echo "--- building the interop example"
(cd "$root" && cargo build --quiet --all-features --example interop)
bin="${CARGO_TARGET_DIR:-$root/target}/debug/examples/interop"

echo "--- Python SDKs"
.venv/bin/python interop.py "$bin"
echo "--- Node SDKs"
node interop.mjs "$bin"
