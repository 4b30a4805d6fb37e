#!/usr/bin/env bash
# Builds the CPU image convnet-serve:latest (with --gpu: also convnet-serve-gpu:latest) and prints
# the image names on stdout, one a line; progress goes to stderr.
#
# Engine: docker when a Docker engine answers, else podman (runc, deploy/podman/containers.conf
# through CONTAINERS_CONF). With podman, a base image that cannot be pulled (no registry) is
# replaced by a local Debian bookworm root made with debootstrap from the machine's Debian mirror
# (the distribution of python:3.11-slim-bookworm), built once and kept in podman's store.
# Environment: ENGINE=docker|podman forces one; CONVNET_IMAGE / CONVNET_GPU_IMAGE name the images.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

gpu=0
for arg in "$@"; do
  case "$arg" in
    --gpu) gpu=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown argument $arg (expected --gpu)" >&2; exit 2 ;;
  esac
done

IMAGE=${CONVNET_IMAGE:-convnet-serve:latest}
GPU_IMAGE=${CONVNET_GPU_IMAGE:-convnet-serve-gpu:latest}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE=localhost/convnet-base:bookworm
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

say() { echo "build-image.sh: $*" >&2; }

engine=${ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null; then
    engine=podman
  else
    say "no Docker engine answers and podman is not installed (bash scripts/install.sh installs it)"
    exit 1
  fi
fi
if [ "$engine" = podman ]; then
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
fi
say "engine $engine"

# The Debian mirror apt uses here (deb822 or one-line sources), for debootstrap.
debian_mirror() {
  local m
  m=$(grep -hoE '^URIs: *http[^ ]*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | sed 's/^URIs: *//')
  [ -n "$m" ] || m=$(grep -hoE '^deb +http[^ ]*/debian/? +bookworm' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  echo "${m:-http://deb.debian.org/debian}"
}

# Prints the image to build FROM: the wanted one if present or pullable, else the local base.
base_image() {
  local wanted=$1
  if podman image exists "$wanted" || timeout 60 podman pull -q "$wanted" >/dev/null 2>&1; then
    echo "$wanted"; return
  fi
  if ! podman image exists "$LOCAL_BASE"; then
    command -v debootstrap >/dev/null || { say "cannot pull $wanted and debootstrap is missing"; exit 1; }
    local dir mirror
    dir=$(mktemp -d /tmp/convnet-base.XXXXXX)
    mirror=$(debian_mirror)
    say "cannot pull $wanted: building $LOCAL_BASE with debootstrap from $mirror (about a minute)"
    nice -n 10 debootstrap --variant=minbase --include=python3,python3-venv bookworm "$dir" "$mirror" >&2
    ln -sf python3 "$dir/usr/bin/python"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -c . | podman import --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE" >/dev/null
    rm -rf "$dir"
  fi
  echo "$LOCAL_BASE"
}

build() {  # build TAG DOCKERFILE BUILD-ARG...
  local tag=$1 file=$2; shift 2
  local args=(-f "$file" -t "$tag")
  for a in "$@"; do args+=(--build-arg "$a"); done
  if [ "$engine" = docker ]; then
    docker build "${args[@]}" . >&2
  else
    # --format docker keeps HEALTHCHECK; the host's pip cache and CA bundle only speed up and
    # allow the builder stage's downloads, the runtime stage copies none of them.
    local extra=(--format docker --layers)
    mkdir -p "$HOME/.cache/pip"
    extra+=(-v "$HOME/.cache/pip:/root/.cache/pip")
    if [ -f "$CA_BUNDLE" ]; then
      extra+=(-v "$CA_BUNDLE:/etc/ssl/host-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/host-ca.crt)
    fi
    # The builder stage is tagged too (NAME-build:TAG), so its layers stay as the cache of the
    # next build; the images a rebuild replaces are removed with the layers only they used, so the
    # store does not grow with every build (an image a container still uses is kept).
    local builder="${tag%:*}-build:${tag##*:}" before_builder before
    before_builder=$(podman image inspect --format '{{.Id}}' "$builder" 2>/dev/null || true)
    before=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    nice -n 10 podman build "${extra[@]}" "${args[@]/#$tag/$builder}" --target build . >&2
    nice -n 10 podman build "${extra[@]}" "${args[@]}" . >&2
    replaced "$tag" "$before"
    replaced "$builder" "$before_builder"
  fi
}

replaced() {  # replaced TAG OLD-ID: remove OLD-ID when TAG now names another image
  if [ -n "$2" ] && [ "$2" != "$(podman image inspect --format '{{.Id}}' "$1")" ]; then
    podman rmi "$2" >/dev/null 2>&1 || true
  fi
}

if [ "$engine" = docker ]; then
  build "$IMAGE" Dockerfile "PYTHON_IMAGE=$PYTHON_IMAGE"
else
  build "$IMAGE" Dockerfile "PYTHON_IMAGE=$(base_image "$PYTHON_IMAGE")"
fi
echo "$IMAGE"

if [ "$gpu" = 1 ]; then
  if [ "$engine" = docker ]; then
    build "$GPU_IMAGE" Dockerfile.gpu "PYTHON_IMAGE=$PYTHON_IMAGE"
  else
    build "$GPU_IMAGE" Dockerfile.gpu "PYTHON_IMAGE=$(base_image "$PYTHON_IMAGE")"
  fi
  echo "$GPU_IMAGE"
fi
