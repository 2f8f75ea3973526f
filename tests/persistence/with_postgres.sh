#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster on a free loopback
# port, then removes the cluster. The command sees:
#   PARLEY_TEST_POSTGRES_URL      postgresql://parley@127.0.0.1:PORT/postgres
#   PARLEY_STORE_PASSWORD         the cluster's password (scram-sha-256 auth)
#   PARLEY_TEST_POSTGRES_RESTART  a command that restarts the server
# Fails (never skips) when PostgreSQL cannot be installed or started.
#
#   tests/persistence/with_postgres.sh COMMAND [ARGS...]
set -euo pipefail

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

pg_bin=$(find_bin)
if [[ -z "$pg_bin" && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "with_postgres: installing the postgresql package" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
  pg_bin=$(find_bin)
fi
if [[ -z "$pg_bin" || ! -x "$pg_bin/initdb" ]]; then
  echo "with_postgres: PostgreSQL is not installed (Debian package postgresql)" >&2
  exit 1
fi

dir=$(mktemp -d /tmp/parley-pg-XXXXXX)
as_owner=()
if [[ $(id -u) == 0 ]]; then
  # initdb refuses to run as root.
  chown postgres: "$dir"
  as_owner=(runuser -u postgres --)
fi
cleanup() {
  "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$password" > "$dir/pwfile"
chmod 600 "$dir/pwfile"
[[ $(id -u) == 0 ]] && chown postgres: "$dir/pwfile"
"${as_owner[@]}" "$pg_bin/initdb" -D "$dir/data" -U parley --auth=scram-sha-256 \
  --pwfile="$dir/pwfile" -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; exit 1; }

started=""
# Below the ephemeral range: a test that restarts the server (PARLEY_TEST_POSTGRES_RESTART) needs
# its port again, and while the server is down an outgoing connection could take an ephemeral one.
read -r ephemeral_first _ </proc/sys/net/ipv4/ip_local_port_range || ephemeral_first=32768
for _ in 1 2 3 4 5 6 7 8; do
  port=$((10000 + RANDOM % (ephemeral_first > 10001 ? ephemeral_first - 10000 : 1)))
  options="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200"
  if "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -o "$options" -l "$dir/server.log" -w \
      -t 60 start >/dev/null 2>&1; then
    started=yes
    break
  fi
done
if [[ -z "$started" ]]; then
  echo "with_postgres: PostgreSQL did not start" >&2
  cat "$dir/server.log" >&2 || true
  exit 1
fi

cat > "$dir/restart.sh" <<RESTART
#!/usr/bin/env bash
exec ${as_owner[*]} "$pg_bin/pg_ctl" -D "$dir/data" -o "$options" -l "$dir/server.log" -w -m fast restart >/dev/null
RESTART
chmod 755 "$dir/restart.sh"

export PARLEY_TEST_POSTGRES_URL="postgresql://parley@127.0.0.1:$port/postgres"
export PARLEY_STORE_PASSWORD="$password"
export PARLEY_TEST_POSTGRES_RESTART="$dir/restart.sh"
set +e
"$@"
status=$?
set -e
exit $status
