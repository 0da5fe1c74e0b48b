#!/usr/bin/env bash
# Installs everything tiergate's demo and tests need on a fresh Debian machine, idempotently:
# Debian packages (Prometheus, PostgreSQL, openssl), a Python virtualenv with the package and its
# pinned dependencies, and the local Kubernetes control plane plus helm (the chart tests run it)
# built from the Go module proxy (cached in ${TIERGATE_CACHE:-~/.cache/tiergate}, so only the
# first run pays for it), and the Argo Rollouts controller the drill's CI test runs against:
# every tool the default test run needs.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_pkgs=()
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || need_pkgs+=(postgresql)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v go >/dev/null 2>&1 || need_pkgs+=(golang-go)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# Debian starts packaged services where it can (as the prometheus user); tests and the demo start
# their own on free ports, as this user: only the packaged one is stopped.
if id -u prometheus >/dev/null 2>&1; then pkill -x -u prometheus prometheus 2>/dev/null || true; fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
say "installing tiergate and its pinned dependencies into .venv"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"

say "building the local control plane and helm (cached after the first run)"
.venv/bin/tiergate dev build
.venv/bin/tiergate dev build --group test
say "building the Argo Rollouts controller for the drill (cached; the first time 4.5 minutes on quiet cores, 13 under load, 1.5-1.9 GB)"
nice -n 10 .venv/bin/tiergate dev build --group argo
say "ready"
