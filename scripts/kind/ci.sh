#!/usr/bin/env bash
# The kind part of .ci/run: runs scripts/kind/e2e.sh when it fits in CI's 90 minutes.
#   TIERGATE_CI_KIND=auto (default): run when every image is already built (a warm cache:
#     about 7 minutes), or when the cold build still fits in the budget given the seconds CI
#     has used so far ($1); otherwise say why and skip. The estimate is the slowest cold run
#     seen (70 minutes on a loaded machine; 17 minutes on a quiet one), so CI never overruns.
#   TIERGATE_CI_KIND=1: always run (builds what is missing).  TIERGATE_CI_KIND=0: never.
# Every step and its seconds land in $TIERGATE_CACHE/kind/timings.log.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

used="${1:-0}"
mode="${TIERGATE_CI_KIND:-auto}"
budget=$((85 * 60))
cold_cost=$((70 * 60))

# Warm means: the kind tool group is built and every image step has its stamp and archive.
# tiergate-image.sh saves the in-cluster Prometheus image into the tiergate archive, under
# the tiergate-image stamp (there is no stamp of its own to wait for).
warm() {
  local f
  for f in kind kubelet kubeadm helm; do [[ -x "$K8S_BIN/$f" ]] || return 1; done
  for f in node-image components tiergate-image; do [[ -f "$STAMPS/$f" ]] || return 1; done
  [[ -f "$IMAGES_DIR/k8s-components-$KUBERNETES_VERSION.tar" && -f "$IMAGES_DIR/tiergate-dev.tar" ]]
}

case "$mode" in
  0) log "Kind e2e skipped reason=TIERGATE_CI_KIND=0"; exit 0 ;;
  1) ;;
  auto)
    if warm; then
      log "Kind cache is warm; running the e2e suite on kind"
    elif (( used + cold_cost < budget )); then
      log "Kind cache is cold; building it fits the budget used_s=$used cold_estimate_s=$cold_cost"
    else
      log "Kind e2e skipped reason=cold-cache used_s=$used cold_estimate_s=$cold_cost budget_s=$budget (run 'make e2e-kind' once to warm the cache, or TIERGATE_CI_KIND=1)"
      exit 0
    fi
    ;;
  *) log "TIERGATE_CI_KIND must be auto, 0 or 1, not '$mode'"; exit 2 ;;
esac

# Leave the machine as found: stop the Docker engine again if this run started it.
engine_was_up=0
[[ -S "$DOCKER_DIR/docker.sock" ]] && docker version >/dev/null 2>&1 && engine_was_up=1
rc=0
"$REPO/scripts/kind/e2e.sh" -p no:cacheprovider || rc=$?
if (( engine_was_up == 0 )); then "$REPO/scripts/kind/dockerd.sh" stop || true; fi
exit "$rc"
