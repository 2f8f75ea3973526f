#!/usr/bin/env bash
# Renders a kustomize overlay with kubectl (or takes a rendered file) and
# validates it with validate.cjs. Fails, never skips, when a tool is missing.
# usage: check_manifests.sh NODE_DIR WORK_DIR (--overlay DIR | --rendered FILE) [--profile P]
set -uo pipefail
src=$(cd "$(dirname "$0")" && pwd)
node_dir=$1
work=$2
shift 2
fail() {
  echo "manifests: FAIL: $*"
  exit 1
}
command -v node >/dev/null || fail "node is not installed"
[[ -d "$node_dir/node_modules/kubernetes-models" ]] ||
  fail "npm packages missing in $node_dir (run setup_node_modules.sh)"
mkdir -p "$work"
rendered=""
profile=none
while (($# > 0)); do
  case "$1" in
    --overlay)
      command -v kubectl >/dev/null || fail "kubectl is not installed: cannot render $2"
      rendered="$work/rendered.yaml"
      kubectl kustomize "$2" >"$rendered" 2>"$work/kustomize.err" ||
        fail "kubectl kustomize $2: $(cat "$work/kustomize.err")"
      shift 2
      ;;
    --rendered)
      rendered=$2
      shift 2
      ;;
    --profile)
      profile=$2
      shift 2
      ;;
    *) fail "unknown argument $1" ;;
  esac
done
[[ -n "$rendered" ]] || fail "give --overlay DIR or --rendered FILE"
NODE_PATH="$node_dir/node_modules" exec node "$src/validate.cjs" "$rendered" "$work" --profile "$profile"
