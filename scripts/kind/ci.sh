#!/usr/bin/env bash
# The kind part of .ci/run: runs scripts/kind/e2e.sh when it fits in CI's 90 minutes.
#   TIERGATE_CI_KIND=auto (default): estimate what the kind step costs on this machine now
#     (tiergate_kits.devcluster.kindcost: each step whose product is missing, at its seconds measured
#     here in timings.log or build-info.json, else a default measured on a quiet machine, plus the
#     run itself), print the parts, and run when the seconds CI has used so far ($1) plus the
#     estimate fit in $TIERGATE_CI_BUDGET_S (85 minutes: 5 kept for the rest); else say why and skip.
#   TIERGATE_CI_KIND=1: always run (builds what is missing).  TIERGATE_CI_KIND=0: never.
#   TIERGATE_CI_KIND=estimate: print the estimate and the decision auto would take; run nothing.
# Every step and its seconds land in $TIERGATE_CACHE/kind/timings.log.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

used="${1:-0}"
mode="${TIERGATE_CI_KIND:-auto}"
budget="${TIERGATE_CI_BUDGET_S:-$((85 * 60))}"

# The estimate reads our dockerd's image list from its data root; another engine is asked.
fits() {
  local images=() list
  if [[ "${DOCKER_HOST:-}" != "unix://$DOCKER_DIR/docker.sock" ]] && docker version >/dev/null 2>&1; then
    list=$(mktemp)
    docker images --format '{{.Repository}}:{{.Tag}}' > "$list"
    images=(--images-file "$list")
  fi
  local rc=0
  PYTHONPATH="$REPO/operator" python3 -m tiergate_kits.devcluster.kindcost --cache "$TIERGATE_CACHE" \
    --used "$used" --budget "$budget" --source-key "$(tiergate_source_key)" "${images[@]}" || rc=$?
  [[ -n "${list:-}" ]] && rm -f "$list"
  return "$rc"
}

case "$mode" in
  0) log "Kind e2e skipped reason=TIERGATE_CI_KIND=0"; exit 0 ;;
  1) ;;
  estimate) rc=0; fits || rc=$?; (( rc == 0 || rc == 3 )) && exit 0; exit "$rc" ;;
  auto)
    rc=0
    fits || rc=$?
    if (( rc == 3 )); then
      log "Kind e2e skipped reason=over-budget (run 'make e2e-kind' once to warm the cache, or TIERGATE_CI_KIND=1)"
      exit 0
    elif (( rc != 0 )); then
      log "Kind estimate failed rc=$rc"; exit "$rc"
    fi
    log "Running the e2e suite on kind"
    ;;
  *) log "TIERGATE_CI_KIND must be auto, estimate, 0 or 1, not '$mode'"; exit 2 ;;
esac

# Leave the machine as found: stop the Docker engine again if this run started it.
engine_was_up=0
[[ -S "$DOCKER_DIR/docker.sock" ]] && docker version >/dev/null 2>&1 && engine_was_up=1
rc=0
"$REPO/scripts/kind/e2e.sh" -p no:cacheprovider || rc=$?
if (( engine_was_up == 0 )); then "$REPO/scripts/kind/dockerd.sh" stop || true; fi
exit "$rc"
