#!/usr/bin/env bash
# Starts the system. Until the services exist this builds the solution and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build Verification.sln -v q -nologo
echo "Built. No service is runnable yet: the services arrive with the incidents and hotline issues."
echo "Mint a development token with: bash scripts/dev-token.sh monitor"
