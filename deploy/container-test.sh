#!/usr/bin/env bash
# Build the image from the Dockerfile and run docker-compose.yml under podman, then run the smoke tests of
# tests/container against that stack (marker `container`). Called by run_tests.sh after the other tests.
#
# - Installs podman, runc and debootstrap with apt-get when they are missing (podman-compose comes with the
#   test extras). If containers cannot run on this host at all, it says why and exits 0 without testing.
# - Base images that are not in podman's storage are replaced by local stand-ins built from Debian packages
#   (deploy/standins/, tagged with exactly the names the Dockerfile and compose file use; see deploy/README.md).
#   They stay in podman's storage, so later runs reuse them. PREDICTQ_PULL_BASE_IMAGES=1 pulls the official
#   images instead, on hosts that reach their registry.
# - pip inside the build reaches the package index as this host's pip does: its settings and CA bundle are
#   mounted over /root for the build (deploy/build_home.py), not written into the Dockerfile or the image.
# - Every container, network and volume of the stack is removed on exit, pass or fail; images are kept.
#
# Usage: deploy/container-test.sh [pytest args]     (environment: PREDICTQ_VENV, as run_tests.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="${PREDICTQ_VENV:-.venv}"
PY="$ROOT/$VENV/bin/python"
COMPOSE=("$ROOT/$VENV/bin/podman-compose")
STANDIN_BASE=localhost/predictq-standin-base:bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# runc and no default ulimits: what this kind of sandboxed kernel allows (see the file's comments).
export CONTAINERS_CONF="$ROOT/deploy/podman/containers.conf"
# Docker's image format keeps the Dockerfile's HEALTHCHECK (the OCI format has no field for it).
export BUILDAH_FORMAT=docker

stage_start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - stage_start ))s"; }
say() { echo "container-test: $*"; }
skip() {
    say "skipped: $*"
    exit 0
}

# ---- tools ----
missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        skip "${missing[*]} not installed, and installing needs root and apt-get"
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
[ -x "${COMPOSE[0]}" ] || { echo "podman-compose missing from $VENV: run ./run_tests.sh first" >&2; exit 1; }
if ! podman info >/dev/null 2>&1; then
    skip "podman cannot start here: $(podman info 2>&1 | tail -1)"
fi
say "$(podman --version), $(runc --version | head -1), $("${COMPOSE[@]}" --version | head -1)"

workdir=$(mktemp -d)
cleanup() {
    status=$?
    "${COMPOSE[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
    # Anything of the project left behind (scaled or renamed containers), then the rebuild check's image.
    podman ps -aq --filter label=com.docker.compose.project=predictq | xargs -r podman rm -f >/dev/null 2>&1 || true
    podman image rm predictq:cache-check >/dev/null 2>&1 || true
    rm -rf "$workdir"
    say "stack removed; finished in $(( $(date +%s) - stage_start ))s with exit code $status"
    exit "$status"
}
trap cleanup EXIT

# ---- base images: the official ones if present (or pulled on request), else Debian stand-ins ----
base_images=$("$PY" - <<'EOF'
import re
from pathlib import Path

import yaml

dockerfile = Path("Dockerfile").read_text(encoding="utf-8")
images = set(re.findall(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.M))
compose = yaml.safe_load(Path("docker-compose.yml").read_text(encoding="utf-8"))
for service in compose["services"].values():
    # Services behind a profile are not started by `up`; services with a build section use the built image.
    if "build" not in service and "profiles" not in service:
        images.add(service["image"])
print("\n".join(sorted(images)))
EOF
)

qualified() {  # docker.io/library/NAME:TAG for an unqualified name, as Docker resolves it
    local name=$1
    case "$name" in
        */*/*) ;;
        */*) case "${name%%/*}" in *.*|*:*|localhost) ;; *) name="docker.io/$name" ;; esac ;;
        *) name="docker.io/library/$name" ;;
    esac
    echo "$name"
}

build_standin_base() {
    podman image exists "$STANDIN_BASE" && return
    say "debootstrap: Debian bookworm (minbase) from $DEBIAN_MIRROR"
    local rootfs="$workdir/rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$workdir/debootstrap.log" 2>&1 \
        || { tail -20 "$workdir/debootstrap.log"; return 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # As in Debian's own container images: package scripts never start services.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    tar -C "$rootfs" -c . | podman import --quiet \
        --change 'LABEL org.opencontainers.image.description="predictq stand-in: Debian bookworm minbase"' \
        --change 'CMD ["bash"]' - "$STANDIN_BASE" >/dev/null
    rm -rf "$rootfs"
}

probed=0
probe() {  # skip, saying why, when this host cannot run a container at all
    [ "$probed" = 1 ] && return
    podman run --rm --network none "$1" true 2>"$workdir/probe.log" \
        || skip "podman cannot run a container here: $(tail -1 "$workdir/probe.log")"
    probed=1
}

for image in $base_images; do
    full=$(qualified "$image")
    repo=${image%%:*}
    name=${repo##*/}
    # A stand-in carries the digest of the files it was built from: rebuilt when they change.
    digest=$(find deploy/standins -path "deploy/standins/$name*" -type f | sort | xargs -r sha256sum | sha256sum)
    digest=${digest%% *}
    if podman image exists "$full"; then
        built_from=$(podman image inspect "$full" \
            --format '{{range $k, $v := .Labels}}{{if eq $k "predictq.standin.digest"}}{{$v}}{{end}}{{end}}')
        if [ -z "$built_from" ]; then
            say "base image $image: present"
            continue
        elif [ "$built_from" = "$digest" ]; then
            say "base image $image: stand-in present"
            continue
        fi
        say "base image $image: stand-in out of date, rebuilding"
    fi
    if [ "${PREDICTQ_PULL_BASE_IMAGES:-0}" = 1 ]; then
        podman pull --quiet "$full" >/dev/null
        say "base image $image: pulled"
        continue
    fi
    containerfile="deploy/standins/$name.Containerfile"
    [ -f "$containerfile" ] || { echo "no stand-in for $image (expected $containerfile)" >&2; exit 1; }
    build_standin_base
    probe "$STANDIN_BASE"
    podman build --quiet --network host --label "predictq.standin.digest=$digest" -f "$containerfile" -t "$full" \
        deploy/standins >/dev/null
    say "base image $image: stand-in built from $containerfile ($(elapsed))"
done
probe "$(qualified "$(grep -m1 '^python' <<<"$base_images")")"

# ---- the image, built through the compose file, with this host's pip settings mounted for the build ----
"$PY" deploy/build_home.py "$workdir/build-home"
build_args="--volume $workdir/build-home:/root:ro"
build_start=$(date +%s)
"${COMPOSE[@]}" --podman-build-args "$build_args" build api >"$workdir/build.log" 2>&1 \
    || { tail -40 "$workdir/build.log"; exit 1; }
cached=$(grep -c -- '--> Using cache' "$workdir/build.log" || true)
say "image predictq:local built in $(( $(date +%s) - build_start ))s (${cached} steps from cache)"
podman image inspect --format 'image predictq:local: {{.Size}} bytes, {{len .RootFS.Layers}} layers' predictq:local
podman history --format '{{printf "%12s" .Size}}  {{.CreatedBy}}' predictq:local | grep -v ' 0 B ' | cut -c1-130

# ---- the smoke tests, against the stack they start with the compose file ----
export PREDICTQ_CONTAINER_ENGINE=podman
export PREDICTQ_COMPOSE="${COMPOSE[*]}"
export PREDICTQ_CONTAINER_BUILD_ARGS="$build_args"
"$PY" -m pytest -m container tests/container -p no:cacheprovider -o addopts="-ra --strict-markers" "$@"
