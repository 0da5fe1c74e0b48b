#!/usr/bin/env bash
# The incident drill with its defaults: three bad releases (the September 2020 no-bind, then
# fail-share, then a late failure) shipped to every tier at once, against plain Deployments,
# against Argo Rollouts (one Rollout per tier) and against tiergate, on the local control plane. Writes report.json, report.md and timeline.png under
# .run/drill/<UTC timestamp>/ and prints the table. Extra arguments go to `tiergate drill`
# (e.g. --short for the CI version, --scenario no-bind, --out DIR).
# The one implementation is tiergate_kits.drill (`tiergate drill`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
exec "$repo/.venv/bin/tiergate" drill "$@"
