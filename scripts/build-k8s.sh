#!/usr/bin/env bash
# Builds the local control plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok) at the versions pinned in
# operator/tiergate_kits/devcluster/versions.env; prints the bin dir. Idempotent.
# The one implementation is tiergate_kits.devcluster.build (also `tiergate dev build`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
[[ -x "$python" ]] || python="$(command -v python3)"
PYTHONPATH="$repo/operator${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m tiergate_kits.devcluster.build "$@"
