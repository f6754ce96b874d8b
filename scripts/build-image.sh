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

# The base must let the image's non-root user run Python (a base or cached tarball made before
# the root-directory fix below did not): one that does not is made afresh.
base_usable() {
  $DOCKER image inspect "$BASE" >/dev/null 2>&1 \
    && $DOCKER run --rm --network none --user 65532:65532 --entrypoint /usr/bin/python3 "$BASE" \
      -c pass >/dev/null 2>&1
}
# An imported tarball has no image config: give it the PATH a Debian image has.
import_base() {
  $DOCKER image rm --force "$BASE" >/dev/null 2>&1 || true
  $DOCKER import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$BASE_TAR" "$BASE" >/dev/null
}
debootstrap_base() {
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
  # mktemp makes the directory 0700, which as the image's / locks every non-root user out.
  $as_root chmod 755 "$rootfs"
  $as_root tar -C "$rootfs" -c . >"$BASE_TAR.partial"
  mv "$BASE_TAR.partial" "$BASE_TAR"
}

if ! base_usable; then
  if [ -s "$BASE_TAR" ]; then
    import_base
  fi
  if ! base_usable; then
    debootstrap_base
    import_base
    base_usable || { echo "error: $BASE does not run python3 as a non-root user" >&2; exit 1; }
  fi
fi

echo "building $IMAGE on $BASE"
DOCKER_BUILDKIT=1 $DOCKER build --network host --build-arg "PYTHON_IMAGE=$BASE" -t "$IMAGE" .
echo "$IMAGE"
