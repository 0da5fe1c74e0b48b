#!/usr/bin/env bash
# Deletes the kind cluster "tiergate" (idempotent). With --docker, also stops the
# Docker engine scripts/kind/dockerd.sh started. Images and the cache stay.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

down() {
  if command -v docker >/dev/null && docker version >/dev/null 2>&1 && [[ -x "$K8S_BIN/kind" ]]; then
    if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
      kind delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE"
    fi
  fi
  rm -f "$KUBECONFIG_FILE"
  if [[ "${1:-}" == --docker ]]; then "$REPO/scripts/kind/dockerd.sh" stop; fi
}

timed kind-down down "$@"
