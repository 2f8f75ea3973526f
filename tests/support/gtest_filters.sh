#!/usr/bin/env bash
# GoogleTest 1.12 passes a run whose --gtest_filter selects no test, so a renamed suite or a
# mistyped pattern would drop tests from CTest unseen. This makes both cases fail.
#
#   gtest_filters.sh run BINARY FILTER [ARGS...]
#       Runs BINARY --gtest_filter=FILTER ARGS...; fails first when FILTER selects nothing.
#   gtest_filters.sh check BINARY FILTER...
#       Fails when one of the FILTERs selects nothing, or when a test of BINARY is selected by
#       none of them (the FILTERs are how CTest splits BINARY, so such a test would never run).
set -euo pipefail

usage() {
  echo "usage: gtest_filters.sh run BINARY FILTER [ARGS...] | check BINARY FILTER..." >&2
  exit 2
}

# Number of tests BINARY runs with --gtest_filter=$2: the indented lines of --gtest_list_tests.
selected() {
  local listing
  listing=$("$binary" --gtest_filter="$1" --gtest_list_tests) || {
    echo "gtest_filters: $binary --gtest_list_tests failed" >&2
    exit 1
  }
  grep -c '^  ' <<<"$listing" || true
}

require_some() {
  local count
  count=$(selected "$1")
  if [[ $count -eq 0 ]]; then
    echo "gtest_filters: --gtest_filter=$1 selects no test of $binary" >&2
    exit 1
  fi
  echo "gtest_filters: --gtest_filter=$1 selects $count tests of $binary"
}

mode=${1:-}
binary=${2:-}
[[ -n $mode && -n $binary && $# -ge 3 ]] || usage
shift 2
case $mode in
  run)
    filter=$1
    shift
    require_some "$filter"
    exec "$binary" --gtest_filter="$filter" "$@"
    ;;
  check)
    for filter in "$@"; do
      require_some "$filter"
    done
    # A negative filter of all of them: what no CTest entry runs.
    none="-$(IFS=:; echo "$*")"
    left=$(selected "$none")
    if [[ $left -ne 0 ]]; then
      echo "gtest_filters: $left tests of $binary match none of: $*" >&2
      "$binary" --gtest_filter="$none" --gtest_list_tests >&2
      exit 1
    fi
    ;;
  *)
    usage
    ;;
esac
