#!/usr/bin/env bash
# Start the predictq stack (redis, API on port 1313, workers) with Docker Compose.
# Extra arguments go to `docker compose up`, e.g. `./run_api.sh --scale worker=4 -d`.
# Without Docker, run the same stack with `predictq up`.
set -euo pipefail
cd "$(dirname "$0")"

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "run_api.sh: Docker Compose not found; install it, or run 'predictq up' instead" >&2
    exit 1
fi

# First run: write .env from .env.example with a fresh random API key, so the API is usable at once.
if [ ! -f .env ]; then
    key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
    sed "s/^PREDICTQ_API_KEYS=.*/PREDICTQ_API_KEYS=${key}:default/" .env.example > .env
    chmod 600 .env
    echo "run_api.sh: wrote .env with API key ${key} (tenant 'default')" >&2
fi

exec "${compose[@]}" up --build "$@"
