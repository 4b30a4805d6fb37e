#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine (Python 3.11, pip, apt as root):
# Debian packages for the deployment and container tests, the Python package with its test extras, and the
# generated gRPC stubs. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

want_apt=${INSTALL_APT:-1}
if [ "$want_apt" = 1 ]; then
  missing=()
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v haproxy >/dev/null || missing+=(haproxy)            # the scale profile's load balancer (2.6 in bookworm)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v h2load >/dev/null || missing+=(nghttp2-client)          # bench/h2load.py: a C load generator
  command -v chromium >/dev/null || missing+=(chromium)            # the page's browser test (Selenium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  # The container tests: podman with runc (crun fails where cgroup v1 controllers are mounted),
  # debootstrap for the local Debian base image, and what podman's networks need.
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v newuidmap >/dev/null || missing+=(uidmap)
  command -v iptables >/dev/null || missing+=(iptables)
  [ -x /usr/lib/podman/netavark ] || command -v netavark >/dev/null || missing+=(netavark)
  [ -x /usr/lib/podman/aardvark-dns ] || command -v aardvark-dns >/dev/null || missing+=(aardvark-dns)
  # Fashion-MNIST for training (python -m training train ... --data fashion-mnist); serving does not need it
  [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
      # Debian starts these as services on install; the tests run their own instances.
      (service haproxy stop || true) >/dev/null 2>&1
      (service prometheus stop || pkill -x prometheus || true) >/dev/null 2>&1
    else
      echo "install.sh: not root, cannot apt-get install ${missing[*]}" >&2
    fi
  fi
fi

$PY -m pip install -q --disable-pip-version-check -e ".[test]"
$PY -m protos.build
