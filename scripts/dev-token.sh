#!/usr/bin/env bash
# Prints a development JWT: scripts/dev-token.sh ROLE [PARTY] [SUBJECT]
# e.g. scripts/dev-token.sh liaison UA ; scripts/dev-token.sh monitor ; scripts/dev-token.sh monitor "" monitor-7
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet run --project shared/Verification.DevTokens -v q -- "$@"
