#!/usr/bin/env bash
# Build dlm's images with podman: localhost/dlm-serve (docker/Dockerfile.serve, no torch), localhost/dlm-train
# (docker/Dockerfile.train, torch + the data) and, for docker/compose.yml where no registry answers, the three
# services from Debian's packages: localhost/dlm-haproxy, localhost/dlm-postgres, localhost/dlm-prometheus.
#
#   scripts/build_images.sh [base|serve|train|services|all]     (default: all = serve + train)
#
# The base image: $BASE when given; else python:3.11-slim-bookworm when a registry answers; else a local
# localhost/dlm-base made from Debian packages with debootstrap (python3, python3-venv, ca-certificates) and
# imported with `podman import`. Needs root and podman, buildah, runc, debootstrap (apt-get installs them).
#
# Knobs (environment):
#   BASE            base image for both Dockerfiles (skips the registry probe and debootstrap)
#   MIRROR          Debian mirror for debootstrap (default: the one apt uses here)
#   TORCH_INDEX     folder holding a PEP 503 `simple/` index with torch/torchvision wheels, mounted into
#                   the train build (default: /opt/pypi-more when it exists; else pip goes to PyPI)
#   REBUILD_BASE=1  rebuild localhost/dlm-base even when it exists
#
# Then (runc, and the containers.conf this script writes, without default ulimits: on these hosts crun fails,
# and both fail on setrlimit with podman's default ulimits):
#   export CONTAINERS_CONF=/etc/containers/dlm-containers.conf
#   podman --runtime runc run -d --network host -v "$PWD/artifacts:/artifacts:ro" localhost/dlm-serve
#   podman --runtime runc run --rm --network host localhost/dlm-train run_cnn_train --preset quick
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
case $what in base|serve|train|services|all) ;; *) echo "usage: $0 [base|serve|train|services|all]" >&2; exit 2 ;; esac

for tool in podman buildah; do
  command -v $tool >/dev/null || { echo "build_images: $tool is missing; as root: apt-get install -y podman buildah runc debootstrap" >&2; exit 2; }
done

# crun/runc fail on setrlimit with podman's default ulimits on these hosts: run with none.
export CONTAINERS_CONF=${CONTAINERS_CONF:-/etc/containers/dlm-containers.conf}
if [[ $CONTAINERS_CONF == /etc/containers/dlm-containers.conf && ! -f $CONTAINERS_CONF ]]; then
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' > "$CONTAINERS_CONF"
fi

elapsed() { echo $(( $(date +%s) - $1 )); }

debian_mirror() {
  local m
  m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
      | grep -oE 'https?://[^ ]+' | grep -E '/debian/?$' | head -n1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

pick_base() {
  if [[ -n ${BASE:-} ]]; then echo "$BASE"; return; fi
  if podman image exists docker.io/library/python:3.11-slim-bookworm \
     || timeout 60 podman pull -q docker.io/library/python:3.11-slim-bookworm >/dev/null 2>&1; then
    echo docker.io/library/python:3.11-slim-bookworm; return
  fi
  echo localhost/dlm-base
}

build_base() {
  if podman image exists localhost/dlm-base && [[ ${REBUILD_BASE:-0} != 1 ]]; then
    echo "build_images: localhost/dlm-base exists (REBUILD_BASE=1 to rebuild)"; return
  fi
  command -v debootstrap >/dev/null || { echo "build_images: debootstrap is missing; apt-get install -y debootstrap" >&2; exit 2; }
  local t0 rootfs mirror cert
  t0=$(date +%s); mirror=${MIRROR:-$(debian_mirror)}
  rootfs=$(mktemp -d /var/tmp/dlm-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  echo "build_images: debootstrap bookworm from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd bookworm "$rootfs" "$mirror" \
    > "$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  # pip inside a build verifies TLS with this machine's CA bundle (a proxy may sign PyPI's certificates).
  cert=${PIP_CERT:-$(pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)}
  mkdir -p "$rootfs$(dirname "$cert")" && cp "$cert" "$rootfs$cert"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import -q \
    --change "ENV PIP_CERT=$cert" --change "ENV SSL_CERT_FILE=$cert" --change "ENV LANG=C.UTF-8" \
    --change 'CMD ["/bin/bash"]' - localhost/dlm-base >/dev/null
  echo "build_images: localhost/dlm-base in $(elapsed "$t0") s"
}

build() {  # build NAME DOCKERFILE [extra podman build args] (context: the repo root, or CONTEXT)
  local name=$1 file=$2 t0; shift 2
  t0=$(date +%s)
  podman build --isolation chroot --network host --format docker --build-arg "BASE=$base" \
    -f "$file" -t "localhost/$name" "$@" "${CONTEXT:-.}"
  echo "build_images: localhost/$name in $(elapsed "$t0") s, $(podman image inspect -f '{{.Size}}' "localhost/$name" \
    | awk '{printf "%.0f MB", $1/1e6}')"
}

base=$(pick_base)
if [[ $base == localhost/dlm-base ]]; then build_base; fi
[[ $what == base ]] && exit 0
echo "build_images: base $base"

if [[ $what == serve || $what == all ]]; then
  build dlm-serve docker/Dockerfile.serve
fi
if [[ $what == train || $what == all ]]; then
  extra=()
  index=${TORCH_INDEX:-/opt/pypi-more}
  if [[ -d $index/simple ]]; then
    # this machine's torch wheels lie on its disk (PyPI's torch pulls ~3 GB of CUDA wheels): mount them
    extra=(--volume "$index:/torch-index:ro" --build-arg "PIP_EXTRA_INDEX_URL=file:///torch-index/simple")
  fi
  build dlm-train docker/Dockerfile.train "${extra[@]}"
fi
if [[ $what == services ]]; then
  # apt-get inside the build installs Debian's haproxy, postgresql-15 and prometheus (context: docker/ alone)
  for svc in haproxy postgres prometheus; do CONTEXT=docker build "dlm-$svc" "docker/Dockerfile.$svc"; done
fi
