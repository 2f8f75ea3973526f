#!/usr/bin/env bash
# Persistence benchmark on SQLite and on a throwaway PostgreSQL cluster.
#   tests/persistence/run_bench.sh [BUILD_DIR] [-- extra parley-persistence-bench flags]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
shift || true
[[ ${1:-} == -- ]] && shift
bench="$build/bin/parley-persistence-bench"
data=$(mktemp -d /tmp/parley-bench-XXXXXX)
trap 'rm -rf "$data"' EXIT
"$bench" --store="sqlite:$data/bench.db" "$@"
"$here/with_postgres.sh" bash -c '"$0" --store="$PARLEY_TEST_POSTGRES_URL" "$@"' "$bench" "$@"
