#!/usr/bin/env bash
# Installs the suites' npm packages (exact versions from the committed package-lock.json) and
# copies the suites into WORK_DIR, a directory of the build tree. The install is skipped when
# the lockfile has not changed.
# usage: setup.sh WORK_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: setup.sh WORK_DIR}
command -v node >/dev/null || { echo "setup: node is not installed"; exit 1; }
command -v npm >/dev/null || { echo "setup: npm is not installed"; exit 1; }
mkdir -p "$work"
cp "$src"/*.mjs "$work/"
stamp="$work/node_modules/.parley-package-lock.json"
if [[ -f "$stamp" ]] && cmp -s "$stamp" "$src/package-lock.json"; then
  echo "setup: node_modules up to date"
  exit 0
fi
cp "$src/package.json" "$src/package-lock.json" "$work/"
(cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
cp "$src/package-lock.json" "$stamp"
echo "setup: node_modules installed in $work"
