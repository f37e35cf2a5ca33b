#!/usr/bin/env bash
# Plays the scenario from the seed articles (tools/Verification.Demo/scenarios/overnight-barrage.json) through the
# public HTTP APIs and prints the compliance summary per party and every log's signed tree head.
# It starts the system for the demo (embedded by default, --distributed for one process per service) with hotline
# deadlines of 30 s so an unacknowledged alert escalates while you watch, and stops it afterwards (--keep: leaves it
# running). --url URL plays against a system that is already running instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=() keep=0 url=""
while [ $# -gt 0 ]; do
  case "$1" in
    --distributed) mode=(--distributed) ;;
    --keep) keep=1 ;;
    --url) url=$2; shift ;;
    *) echo "unknown option $1 (use --distributed, --keep, --url URL)" >&2; exit 2 ;;
  esac
  shift
done
dotnet build tools/Verification.Demo -c Release -v q -nologo >/dev/null
demo() { dotnet tools/Verification.Demo/bin/Release/net10.0/verification-demo.dll "$@"; }
if [ -n "$url" ]; then demo --url "$url"; exit; fi

export Hotline__Deadlines__critical=00:00:30 Hotline__Deadlines__high=00:00:30 Hotline__Deadlines__routine=00:00:30 \
  Hotline__Deadlines__preNotification=00:05:00 Hotline__Escalation__0__After=00:00:30 Hotline__Escalation__1__After=00:00:30 \
  Hotline__Escalation__2__After=00:00:30
rm -f .data/endpoints
bash scripts/run.sh "${mode[@]}" >.data/demo-system.log 2>&1 &
system=$!
trap 'kill -TERM $system 2>/dev/null; wait $system 2>/dev/null || true' EXIT
echo "starting the system (log: .data/demo-system.log)"
for _ in $(seq 1 600); do
  [ -f .data/endpoints ] && break
  kill -0 $system 2>/dev/null || { echo "the system did not start:" >&2; tail -n 30 .data/demo-system.log >&2; exit 1; }
  sleep 0.5
done
[ -f .data/endpoints ] || { echo "the system did not become ready" >&2; exit 1; }
demo --endpoints .data/endpoints
if [ "$keep" = 1 ]; then
  cat .data/endpoints
  echo "The system keeps running (its tokens are in .data/demo-system.log); Ctrl-C stops it."
  wait $system
fi
