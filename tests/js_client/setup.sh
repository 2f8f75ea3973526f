#!/usr/bin/env bash
# Copies clients/js into WORK_DIR/pkg, installs its npm packages (exact versions from
# package-lock.json), compiles it with the pinned TypeScript compiler, and fails when the
# committed dist/ is not exactly what that compiler makes of src/ (the chat page embeds
# dist/index.js, so the two must never drift apart).
# usage: setup.sh CLIENT_SRC WORK_DIR
set -euo pipefail
src=$(cd "${1:?usage: setup.sh CLIENT_SRC WORK_DIR}" && pwd)
work=${2:?usage: setup.sh CLIENT_SRC WORK_DIR}
command -v node >/dev/null || { echo "js_client: node is not on PATH"; exit 1; }
command -v npm >/dev/null || { echo "js_client: npm is not on PATH"; exit 1; }
pkg="$work/pkg"
mkdir -p "$pkg"
rm -rf "$pkg/src" "$pkg/test" "$pkg/dist"
cp "$src/package.json" "$src/package-lock.json" "$src/tsconfig.json" "$src/README.md" "$pkg/"
cp -r "$src/src" "$src/test" "$pkg/"
stamp="$pkg/node_modules/.parley-package-lock.json"
if ! { [[ -f "$stamp" ]] && cmp -s "$stamp" "$src/package-lock.json"; }; then
  (cd "$pkg" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$src/package-lock.json" "$stamp"
fi
(cd "$pkg" && node node_modules/typescript/bin/tsc -p tsconfig.json)
if ! diff -r "$pkg/dist" "$src/dist"; then
  echo "js_client: clients/js/dist differs from what tsc $(cd "$pkg" && node node_modules/typescript/bin/tsc --version) makes of src/:"
  echo "run 'npm ci && npm run build' in clients/js and commit dist/"
  exit 1
fi
echo "js_client: built with $(cd "$pkg" && node node_modules/typescript/bin/tsc --version), dist/ matches; node $(node --version)"
