#!/bin/sh
# docker/Dockerfile.postgres's entry point: on the first start (an empty $PGDATA) create the cluster with
# POSTGRES_USER (its password POSTGRES_PASSWORD) and the database POSTGRES_DB, as the official image does; then
# run postgres on every address of the container (password auth from the network, trust on its own socket in
# $PGHOST).
set -eu
# compose.yml's cap_add (which the official image's root entry point needs) reaches a non-root user as ambient
# capabilities under podman: start again without any (none inherited, none ambient: none after the exec)
grep -Eq '^CapEff:[[:space:]]*0+$' /proc/self/status || exec setpriv --inh-caps=-all --ambient-caps=-all "$0" "$@"
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\";" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "postgres-entrypoint: created the cluster, role $user, database $db"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories="$PGHOST" "$@"
