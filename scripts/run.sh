#!/usr/bin/env bash
# Runs the whole system in one process (embedded mode, no Docker): a private PostgreSQL from the local
# binaries with its data in .data/ (kept between runs), every service module on an in-memory bus.
# Options: --wipe (start from an empty database), --port N (default 5100). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/servers.sh
port=5100 wipe=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wipe) wipe=1 ;;
    --port) port=$2; shift ;;
    *) echo "unknown option $1 (use --wipe, --port N)" >&2; exit 2 ;;
  esac
  shift
done
ensure_installed postgres
data="$PWD/.data"
[ "$wipe" = 1 ] && rm -rf "$data"
mkdir -p "$data"
# A crashed earlier run may have left its server behind: stop it before starting ours.
[ -f "$data/pg/postmaster.pid" ] && as_user postgres pg_ctl -D "$data/pg" -m fast -w stop >/dev/null 2>&1 || true
start_postgres "$data" on
trap 'stop_servers "$data"' EXIT
echo "PostgreSQL on 127.0.0.1:$PG_PORT, data in $data"
dotnet build services/Verification.Host -c Release -v q -nologo
ConnectionStrings__Postgres="$PG_URL" Auth__DevMode=true ASPNETCORE_URLS="http://127.0.0.1:$port" \
  dotnet run --no-build -c Release --project services/Verification.Host
