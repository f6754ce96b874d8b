#!/usr/bin/env bash
# `make image`: builds the operator image from the Dockerfile and tags it as the chart's default
# image reference (image.repository : appVersion), with no registry pull.
# The base is made from Debian's packages with debootstrap (python3, pip, venv), imported into
# Docker as inferfleet-base:bookworm; its tarball is cached outside the repository
# (${XDG_CACHE_HOME:-~/.cache}/inferfleet) so a rerun imports it in seconds.
# Needs a running Docker daemon (scripts/start-docker.sh) and root or sudo for debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

repository=$(sed -n 's/^  repository: *//p' charts/inferfleet/values.yaml | head -1)
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/inferfleet/Chart.yaml)
IMAGE=${IMAGE:-$repository:$app_version}
BASE=inferfleet-base:bookworm
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/inferfleet
BASE_TAR=$CACHE/debian-bookworm-python3.tar

# Debian's own client builds with BuildKit by itself; a newer client needs the buildx plugin.
DOCKER=${DOCKER:-docker}
if ! $DOCKER buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then
  DOCKER=/usr/bin/docker
fi

as_root=""
[ "$(id -u)" = "0" ] || as_root="sudo -n"

if ! $DOCKER image inspect "$BASE" >/dev/null 2>&1; then
  if [ ! -s "$BASE_TAR" ]; then
    echo "debootstrap: a bookworm base with python3 (a few minutes; cached in $CACHE)"
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d)
    trap '$as_root rm -rf "$rootfs"' EXIT
    $as_root debootstrap --variant=minbase --include=python3,python3-pip,python3-venv \
      bookworm "$rootfs" ${DEBIAN_MIRROR:-} >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # The image's pip installs into the system Python (nothing else lives there), and needs the
    # same certificate authorities as this machine to reach the package index.
    $as_root rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    $as_root cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    $as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    $as_root tar -C "$rootfs" -c . >"$BASE_TAR.partial"
    mv "$BASE_TAR.partial" "$BASE_TAR"
  fi
  $DOCKER import "$BASE_TAR" "$BASE" >/dev/null
fi

echo "building $IMAGE on $BASE"
DOCKER_BUILDKIT=1 $DOCKER build --network host --build-arg "PYTHON_IMAGE=$BASE" -t "$IMAGE" .
echo "$IMAGE"
