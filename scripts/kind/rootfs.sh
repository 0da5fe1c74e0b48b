#!/usr/bin/env bash
# Debian root file systems for the offline images (kind node, Kubernetes component
# base, Python base, Prometheus base), each by debootstrap on the host and docker
# import. Usage: scripts/kind/rootfs.sh [node|component|python|prometheus]...
# (all when none given). Cached per package list; idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

one() {
  case "$1" in
    node) debootstrap_image "$NODE_ROOTFS_IMAGE" "$NODE_PACKAGES" ;;
    component) debootstrap_image "$COMPONENT_BASE_IMAGE" "$COMPONENT_PACKAGES" ;;
    python) debootstrap_image "$PYTHON_BASE_IMAGE" "$PYTHON_PACKAGES" ;;
    prometheus) debootstrap_image "$PROMETHEUS_BASE_IMAGE" "$PROMETHEUS_PACKAGES" ;;
    *) echo "unknown rootfs: $1" >&2; exit 2 ;;
  esac
}

targets=("$@")
((${#targets[@]})) || targets=(node component python prometheus)
for t in "${targets[@]}"; do timed "rootfs-$t" one "$t"; done
