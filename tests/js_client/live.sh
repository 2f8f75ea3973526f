#!/usr/bin/env bash
# The library's node:test suite against the real services.
# usage: live.sh WORK_DIR BIN_DIR
set -euo pipefail
work=$(cd "${1:?usage: live.sh WORK_DIR BIN_DIR}" && pwd)
export PARLEY_BIN_DIR=$(cd "${2:?usage: live.sh WORK_DIR BIN_DIR}" && pwd)
exec node --test --test-reporter=spec "$work/pkg/test/unit.test.mjs" "$work/pkg/test/client.test.mjs"
