#!/usr/bin/env bash
# Runs the chat page test in headless Chromium against the built services.
# Installs the npm packages (exact versions from package-lock.json) next to
# this script when they are missing or stale. Fails, never skips, when node,
# npm or the browser are not there.
# usage: run.sh BIN_DIR [OUT_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
bin_dir=$(cd "${1:?usage: run.sh BIN_DIR [OUT_DIR]}" && pwd)
out_dir=${2:-$PWD}
chromium=${PARLEY_CHROMIUM:-/usr/bin/chromium}

command -v node >/dev/null || { echo "browser test: node is not on PATH (CTest puts the test toolchain there)"; exit 1; }
command -v npm >/dev/null || { echo "browser test: npm is not installed (scripts/install-deps --with-tests)"; exit 1; }
[[ -x "$chromium" ]] || { echo "browser test: $chromium is missing (scripts/install-deps --with-tests)"; exit 1; }

stamp="$src/node_modules/.parley-package-lock.json"
if ! { [[ -f "$stamp" ]] && cmp -s "$stamp" "$src/package-lock.json"; }; then
  # The browser is the system's; npm must never fetch one.
  (cd "$src" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  cp "$src/package-lock.json" "$stamp"
fi

export PARLEY_BIN_DIR=$bin_dir PARLEY_BROWSER_OUT=$out_dir PARLEY_CHROMIUM=$chromium
exec node --test --test-reporter=spec "$src/chat_page.test.mjs"
