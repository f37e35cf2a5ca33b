#!/usr/bin/env bash
# Runs the whole system. Default (embedded, no Docker): a private PostgreSQL from the local binaries with
# its data in .data/ (kept between runs) and every service module in one process on an in-memory bus.
# --distributed: each service in its own process on a local RabbitMQ (installed with apt if missing),
# one database per service; API ports PORT+1 … PORT+5.
# Options: --wipe (start from empty data), --port N (default 5100). Ctrl-C stops everything.
# When everything answers, .data/endpoints lists "service=url" lines (scripts/demo.sh reads it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/servers.sh
port=5100 wipe=0 distributed=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wipe) wipe=1 ;;
    --port) port=$2; shift ;;
    --distributed) distributed=1 ;;
    *) echo "unknown option $1 (use --distributed, --wipe, --port N)" >&2; exit 2 ;;
  esac
  shift
done
services=(incidents hotline exchanges pullbacks compliance)
project() { case $1 in incidents) echo Incidents ;; hotline) echo Hotline ;; exchanges) echo Exchanges ;; pullbacks) echo Pullbacks ;; compliance) echo Compliance ;; esac; }

if [ "$distributed" = 1 ]; then ensure_installed; else ensure_installed postgres; fi
data="$PWD/.data"
[ "$wipe" = 1 ] && rm -rf "$data"
mkdir -p "$data/logs"
rm -f "$data/endpoints"
# A crashed earlier run may have left its servers behind: stop them before starting ours.
[ -f "$data/pg/postmaster.pid" ] && as_user postgres pg_ctl -D "$data/pg" -m fast -w stop >/dev/null 2>&1 || true
start_postgres "$data" on
pids=()
# Runs a service, and again whenever it exits with 75: it stopped itself because its bus was stuck (BusWatchdog), and a
# container's restart policy would start it again. TERM is passed on to it.
supervised() {
  local child code
  trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
  while :; do
    "$@" &
    child=$!
    wait "$child" && return 0
    code=$?
    [ "$code" = 75 ] || return "$code"
    echo "$(date -u +%FT%TZ) exited with 75 (its bus was stuck): starting it again"
    sleep 1
  done
}
cleanup() {
  trap - EXIT INT TERM
  rm -f "$data/endpoints"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_servers "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "PostgreSQL on 127.0.0.1:$PG_PORT, data in $data"

if [ "$distributed" = 0 ]; then
  dotnet build services/Verification.Host -c Release -v q -nologo >/dev/null
  for s in "${services[@]}"; do echo "$s=http://127.0.0.1:$port"; done >"$data/endpoints.tmp"
  ConnectionStrings__Postgres="$PG_URL" Auth__DevMode=true ASPNETCORE_URLS="http://127.0.0.1:$port" \
    dotnet services/Verification.Host/bin/Release/net10.0/Verification.Host.dll --contentRoot "$PWD/services/Verification.Host" &
  pids+=($!)
else
  rabbitmqctl -n verification@localhost stop >/dev/null 2>&1 || true
  start_rabbitmq "$data" verification@localhost
  echo "RabbitMQ on ${AMQP_URL#amqp://guest:guest@}, node $RABBIT_NODE"
  for s in "${services[@]}"; do
    as_user postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$s'" | grep -q 1 \
      || as_user postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $s" >/dev/null
  done
  for s in "${services[@]}"; do
    p=$(project "$s"); dotnet build "services/$p/Verification.$p" -c Release -v q -nologo >/dev/null
  done
  dotnet build shared/Verification.DevTokens -c Release -v q -nologo >/dev/null
  : >"$data/endpoints.tmp"
  i=0
  for s in "${services[@]}"; do
    i=$((i + 1)); p=$(project "$s"); url="http://127.0.0.1:$((port + i))"
    ConnectionStrings__Postgres="$PG_URL;Database=$s" Bus__RabbitMq="$AMQP_URL" Auth__DevMode=true ASPNETCORE_URLS="$url" \
      supervised dotnet "services/$p/Verification.$p/bin/Release/net10.0/Verification.$p.dll" --contentRoot "$PWD/services/$p/Verification.$p" >"$data/logs/$s.log" 2>&1 &
    pids+=($!)
    echo "$s=$url" >>"$data/endpoints.tmp"
  done
fi

# Ready when every service's readiness check answers 200.
while read -r line; do
  url=${line#*=}
  for _ in $(seq 1 600); do
    curl -fs -o /dev/null "$url/health/ready" && break
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || { echo "a service stopped during start-up; logs in $data/logs" >&2; exit 1; }; done
    sleep 0.2
  done
done <"$data/endpoints.tmp"
mv "$data/endpoints.tmp" "$data/endpoints"

if [ "$distributed" = 1 ]; then
  token() { dotnet shared/Verification.DevTokens/bin/Release/net10.0/Verification.DevTokens.dll "$@"; }
  echo
  echo "Verification is running (distributed: one process per service, RabbitMQ, a database per service)."
  while read -r line; do
    printf '  %-11s %s   OpenAPI %s/openapi/v1.json   log %s/log/%s/tree-head\n' "${line%%=*}" "${line#*=}" "${line#*=}" "${line#*=}" "${line%%=*}"
  done <"$data/endpoints"
  echo "  logs        $data/logs/<service>.log"
  echo
  echo "Development tokens (Authorization: Bearer <token>):"
  echo "  monitor      $(token monitor '' monitor-1)"
  echo "  verifier     $(token verifier '' verifier-1)"
  echo "  liaison UA   $(token liaison UA liaison-ua)"
  echo "  liaison RU   $(token liaison RU liaison-ru)"
  echo "  liaison US   $(token liaison US liaison-us)"
  echo "  auditor      $(token auditor US auditor-1)"
  echo "  intermediary $(token intermediary ICRC icrc-1)"
  echo "  admin        $(token admin '' admin-1)"
  echo
  echo "Press Ctrl-C to stop."
fi
wait "${pids[@]}"
