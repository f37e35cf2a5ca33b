#!/usr/bin/env bash
# Runs every test against real PostgreSQL and RabbitMQ. Installs what is missing (apt), starts one
# private server of each for the whole run (unless VERIFICATION_TEST_POSTGRES / _RABBITMQ name
# existing ones) and stops them at the end. Extra arguments go to `dotnet test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/servers.sh
ensure_installed

if [ -z "${VERIFICATION_TEST_POSTGRES:-}" ] || [ -z "${VERIFICATION_TEST_RABBITMQ:-}" ]; then
  run_dir=$(mktemp -d /tmp/verification-run.XXXXXX)
  chmod 755 "$run_dir"
  trap 'stop_servers "$run_dir"; rm -rf "$run_dir"' EXIT
  if [ -z "${VERIFICATION_TEST_POSTGRES:-}" ]; then
    start_postgres "$run_dir" off   # test data is thrown away; the benchmark measures with fsync on
    export VERIFICATION_TEST_POSTGRES="$PG_URL"
  fi
  if [ -z "${VERIFICATION_TEST_RABBITMQ:-}" ]; then
    start_rabbitmq "$run_dir"
    export VERIFICATION_TEST_RABBITMQ="$AMQP_URL" VERIFICATION_TEST_RABBITMQ_NODE="$RABBIT_NODE"
  fi
fi
echo "PostgreSQL: $VERIFICATION_TEST_POSTGRES"
echo "RabbitMQ:   $VERIFICATION_TEST_RABBITMQ"
dotnet test Verification.sln --logger trx --results-directory "${TEST_RESULTS:-TestResults}" "$@"
