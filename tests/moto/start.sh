#!/bin/sh
# Starts moto's server for manual runs: tests/moto/start.sh [PORT] [NO_AUTH_COUNT]
# Tests start their own instance (see src/app/tests/aws_moto.rs); this is for poking by hand.
# With INITIAL_NO_AUTH_ACTION_COUNT=N the first N requests skip IAM checks (setup), then
# every request's SigV4 signature and IAM policy is enforced.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
moto="${MOTO_SERVER:-$here/.venv/bin/moto_server}"
if [ ! -x "$moto" ]; then
    echo "moto_server not found at $moto: run 'make test' (it creates .venv from tests/moto/requirements.txt)" >&2
    exit 1
fi
INITIAL_NO_AUTH_ACTION_COUNT="${2:-${INITIAL_NO_AUTH_ACTION_COUNT:-20}}" exec "$moto" -H 127.0.0.1 -p "${1:-5000}"
