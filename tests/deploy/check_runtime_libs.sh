#!/usr/bin/env bash
# Checks that a Dockerfile's runtime stage installs every shared library the
# given binaries load. There is no container engine here, so the check works
# from the package database instead: the packages named by `apt-get install`
# in the last stage, expanded with their dependencies, must own every library
# `ldd` resolves for the binaries.
#
# usage: check_runtime_libs.sh DOCKERFILE BINARY...
# Exit 0 when everything is covered; 1 with a list of what is not.
set -uo pipefail

if (($# < 2)); then
  echo "usage: $0 DOCKERFILE BINARY..." >&2
  exit 2
fi
dockerfile=$1
shift

fail() {
  echo "runtime-libs: FAIL: $*"
  exit 1
}

[[ -r "$dockerfile" ]] || fail "cannot read $dockerfile"

# The last stage, with comment lines dropped and continuation lines joined,
# one Dockerfile instruction per line.
stage=$(awk '
  /^[[:space:]]*#/ { next }
  /^[[:space:]]*FROM[[:space:]]/ { buf = "" }
  { buf = buf $0 "\n" }
  END { printf "%s", buf }' "$dockerfile" | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta')

base=$(sed -n 's/^[[:space:]]*FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' <<<"$stage" | head -1)
[[ "$base" == "debian:12-slim" ]] || fail "runtime stage must start FROM debian:12-slim, found '$base'"

user=$(sed -n 's/^[[:space:]]*USER[[:space:]]\+\([^[:space:]]\+\).*/\1/p' <<<"$stage" | tail -1)
case "${user%%:*}" in
  "" | root | 0) fail "runtime stage must switch to a non-root USER (found '${user:-none}')" ;;
esac

# Package names after every `apt-get install` in the stage's RUN lines.
packages=()
while IFS= read -r run; do
  # Split the shell command on && and ; so each apt-get call stands alone.
  while IFS= read -r part; do
    read -ra words <<<"$part"
    in_install=0
    for w in "${words[@]}"; do
      if ((in_install)); then
        [[ "$w" == -* ]] && continue
        packages+=("$w")
      elif [[ "$w" == install && "$part" == *apt-get* ]]; then
        in_install=1
      fi
    done
  done < <(sed -e 's/&&/\n/g' -e 's/;/\n/g' <<<"$run")
done < <(grep -E '^[[:space:]]*RUN[[:space:]]' <<<"$stage")

((${#packages[@]} > 0)) || fail "no 'apt-get install' found in the runtime stage"
echo "runtime-libs: runtime packages: ${packages[*]}"

# Everything those packages bring along. Recommends are not installed
# (--no-install-recommends), so they do not count.
declare -A provided=()
expanded=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances "${packages[@]}" 2>&1) ||
  fail "apt-cache depends failed (is every runtime package a real Debian 12 package?): $expanded"
while IFS= read -r line; do
  [[ "$line" == " "* || -z "$line" ]] && continue
  name=${line#<}
  name=${name%>}
  provided[${name%%:*}]=1
done <<<"$expanded"
for p in "${packages[@]}"; do
  [[ -n "${provided[$p]:-}" ]] || fail "package '$p' is unknown to apt"
done

checked=0
missing=0
declare -A seen=()
paths=()
for binary in "$@"; do
  [[ -x "$binary" ]] || fail "binary not found: $binary"
  libs=$(ldd "$binary" 2>&1) || fail "ldd failed on $binary: $libs"
  if grep -q "not found" <<<"$libs"; then
    fail "$binary has unresolved libraries on this machine: $(grep 'not found' <<<"$libs")"
  fi
  while IFS= read -r path; do
    [[ -n "$path" && -z "${seen[$path]:-}" ]] || continue
    seen[$path]=1
    paths+=("$path")
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs")
done

# Which package owns each library. dpkg records some files under /lib and
# others under /usr/lib (merged /usr), and ldd may print either form, so ask
# for every spelling at once (one dpkg call: it is slow to start).
declare -A owner=()
queries=()
for path in "${paths[@]}"; do
  case "$path" in
    /usr/*) queries+=("$path" "${path#/usr}") ;;
    *) queries+=("$path" "/usr$path") ;;
  esac
  queries+=("$(readlink -f "$path")")
done
while IFS= read -r line; do
  # "pkg:arch: /path" (or "a, b: /path" for diverted files): first owner.
  file=${line##*: }
  pkg=${line%%: /*}
  pkg=${pkg%%,*}
  owner[$file]=${pkg%%:*}
done < <(dpkg -S "${queries[@]}" 2>/dev/null | grep ': /')

for path in "${paths[@]}"; do
  checked=$((checked + 1))
  pkg=""
  for c in "$path" "${path#/usr}" "/usr$path" "$(readlink -f "$path")"; do
    if [[ -n "${owner[$c]:-}" ]]; then
      pkg=${owner[$c]}
      break
    fi
  done
  if [[ -z "$pkg" ]]; then
    echo "runtime-libs: MISSING $path (no Debian package owns it)"
    missing=$((missing + 1))
  elif [[ -z "${provided[$pkg]:-}" ]]; then
    echo "runtime-libs: MISSING $path from package $pkg, which the runtime stage does not install"
    missing=$((missing + 1))
  fi
done

echo "runtime-libs: $checked libraries checked for $# binaries, $missing not covered"
((missing == 0)) || exit 1
echo "runtime-libs: OK"
