#!/usr/bin/env bash
# The measuring harness (Release): starts private PostgreSQL and RabbitMQ (installed with apt if missing) unless
# VERIFICATION_TEST_POSTGRES / _RABBITMQ name existing ones, runs the five services as separate processes, drives them
# at fixed arrival rates and writes results/<time>/report.md and latency.svg. --quick: one short step at 100/s;
# --rates 25,50,100: these steps (each run even if the one before was not sustainable).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/servers.sh
ensure_installed
run_dir=$(mktemp -d /tmp/verification-load.XXXXXX)
chmod 755 "$run_dir"
trap 'stop_servers "$run_dir"; rm -rf "$run_dir"' EXIT
if [ -z "${VERIFICATION_TEST_POSTGRES:-}" ]; then
  start_postgres "$run_dir" on   # measured with fsync on, as in production
  export VERIFICATION_TEST_POSTGRES="$PG_URL"
fi
if [ -z "${VERIFICATION_TEST_RABBITMQ:-}" ]; then
  start_rabbitmq "$run_dir"
  export VERIFICATION_TEST_RABBITMQ="$AMQP_URL" VERIFICATION_TEST_RABBITMQ_NODE="$RABBIT_NODE"
fi
dotnet build tests/Verification.Load -c Release -v q -nologo >/dev/null
dotnet tests/Verification.Load/bin/Release/net10.0/Verification.Load.dll "$@"
