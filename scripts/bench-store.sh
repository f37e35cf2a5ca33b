#!/usr/bin/env bash
# Event store benchmark: starts a private PostgreSQL with fsync ON (durable commits, like production),
# runs the store against raw Npgsql baselines in the same run, prints a Markdown table.
# Usage: bash scripts/bench-store.sh [seconds per side per write case, in alternating one-second turns] [events for catch-up]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/servers.sh
ensure_installed
run_dir=$(mktemp -d /tmp/verification-bench.XXXXXX); chmod 755 "$run_dir"
trap 'stop_servers "$run_dir"; rm -rf "$run_dir"' EXIT
start_postgres "$run_dir" on
dotnet run -c Release --project tests/Verification.EventStore.Benchmarks -- "$PG_URL" "${1:-5}" "${2:-200000}"
