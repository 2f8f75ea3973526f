#!/usr/bin/env bash
# Runs one node:test suite of WORK_DIR against the service binaries in BIN_DIR.
# usage: run.sh WORK_DIR BIN_DIR SUITE.test.mjs
set -euo pipefail
work=$(cd "${1:?usage: run.sh WORK_DIR BIN_DIR SUITE}" && pwd)
export PARLEY_BIN_DIR=$(cd "${2:?usage: run.sh WORK_DIR BIN_DIR SUITE}" && pwd)
node_major=$(node -p 'process.versions.node.split(".")[0]')
[[ "$node_major" -ge 22 ]] || { echo "run: node $(node --version) is too old; the suites need 22"; exit 1; }
exec node --test --test-reporter=spec "$work/${3:?usage: run.sh WORK_DIR BIN_DIR SUITE}"
