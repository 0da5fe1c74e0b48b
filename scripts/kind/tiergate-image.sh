#!/usr/bin/env bash
# The tiergate image ($TIERGATE_IMAGE, default tiergate:dev).
# TIERGATE_OFFLINE=1: the project's wheel and the test SMSC's (kits/smsc, for the chart's smsc
# component) built from the working tree plus their pinned
# dependencies (constraints.txt) as wheels on the host (PyPI), then
# images/tiergate/Dockerfile.offline on the debootstrapped Python base with no network.
# TIERGATE_OFFLINE=0: `docker build --build-arg KITS=1 -f images/Dockerfile .` (needs a registry).
# Also the in-cluster Prometheus image (Debian's prometheus binary) when offline.
# Saved to $TIERGATE_CACHE/kind/images/tiergate-dev.tar for `kind load image-archive`.
# Rebuilt only when the working tree's package, constraints or a Dockerfile changed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WHEELS="$KIND_CACHE/wheels"
ARCHIVE="$IMAGES_DIR/tiergate-dev.tar"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"

offline_build() {
  local ctx="$KIND_CACHE/build/tiergate"
  rm -rf "$ctx"; mkdir -p "$ctx/wheels" "$WHEELS"
  log "Building the project wheel"
  "$PYTHON" -m pip wheel -q --no-deps -w "$ctx/wheels" "$REPO" "$REPO/kits/smsc"
  log "Fetching dependency wheels from PyPI"
  "$PYTHON" -m pip wheel -q -w "$WHEELS" -c "$REPO/constraints.txt" "$ctx"/wheels/tiergate-*.whl smpp34
  find "$WHEELS" -name 'tiergate-*.whl' -delete
  cp "$WHEELS"/*.whl "$ctx/wheels/"
  cp "$REPO/images/tiergate/Dockerfile.offline" "$ctx/Dockerfile"
  docker build -q --network none --build-arg "BASE=$PYTHON_BASE_IMAGE" -t "$TIERGATE_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

prometheus_image() {
  docker build -q --network none --build-arg "BASE=$PROMETHEUS_BASE_IMAGE" -t "$PROMETHEUS_IMAGE" \
    -f "$REPO/images/prometheus/Dockerfile" "$REPO/images/prometheus" >/dev/null
}

build() {
  local key
  key="$(tiergate_source_key)-$TIERGATE_OFFLINE"
  if [[ "$TIERGATE_OFFLINE" == 1 ]]; then
    "$REPO/scripts/kind/rootfs.sh" python prometheus
    key="$key-$(docker image inspect -f '{{.Id}}' "$PYTHON_BASE_IMAGE" "$PROMETHEUS_BASE_IMAGE" | sha256sum | cut -c1-16)"
    key="$key-$(stamp_key "$REPO/images/prometheus/Dockerfile")"
  fi
  if image_exists "$TIERGATE_IMAGE" && [[ -f "$ARCHIVE" ]] && stamp_ok tiergate-image "$key"; then
    up_to_date "Tiergate image up to date image=$TIERGATE_IMAGE"
    return
  fi
  if [[ "$TIERGATE_OFFLINE" == 1 ]]; then
    offline_build
    prometheus_image
    docker save -o "$ARCHIVE.tmp" "$TIERGATE_IMAGE" "$PROMETHEUS_IMAGE"
  else
    docker build -t "$TIERGATE_IMAGE" --build-arg KITS=1 -f "$REPO/images/Dockerfile" "$REPO"
    docker save -o "$ARCHIVE.tmp" "$TIERGATE_IMAGE"
  fi
  mv "$ARCHIVE.tmp" "$ARCHIVE"
  prune_dangling
  stamp_set tiergate-image "$key"
  log "Built image=$TIERGATE_IMAGE size_mb=$(( $(docker image inspect -f '{{.Size}}' "$TIERGATE_IMAGE") / 1048576 )) archive_mb=$(( $(stat -c %s "$ARCHIVE") / 1048576 ))"
}

timed tiergate-image build
