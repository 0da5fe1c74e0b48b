#!/usr/bin/env bash
# The whole e2e path: cluster up, images in, chart installed, the e2e suite run against
# it by KUBECONFIG, cluster down (keep it with TIERGATE_KEEP_CLUSTER=1).
# TIERGATE_OFFLINE=1 (default): every image is built here; TIERGATE_OFFLINE=0 on a machine
# with internet: stock kind node image and `docker build` of images/Dockerfile.
# Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start=$(date +%s)
"$REPO/scripts/kind/up.sh"
cleanup() { [[ "${TIERGATE_KEEP_CLUSTER:-0}" == 1 ]] || "$REPO/scripts/kind/down.sh"; }
trap cleanup EXIT
"$REPO/scripts/kind/install.sh"
python="${PYTHON:-$REPO/.venv/bin/python}"
rc=0
KUBECONFIG="$KUBECONFIG_FILE" TIERGATE_E2E=1 "$python" -m pytest "$REPO/tests/e2e" -m e2e -p no:cacheprovider "$@" || rc=$?
printf '%s step=e2e-total seconds=%s rc=%s\n' "$(date -u +%FT%TZ)" "$(( $(date +%s) - start ))" "$rc" | tee -a "$KIND_CACHE/timings.log" >&2
exit "$rc"
