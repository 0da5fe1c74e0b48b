"""The Argo Rollouts controller on the local control plane, for the drill's peer contender.

The controller is built like the other binaries (``tiergate dev build --group argo``, pinned by
``ARGO_ROLLOUTS_VERSION`` in ``versions.env``); its CRDs come from the same module version in
the Go module cache, so the API the controller serves and the one installed always agree. It
runs as a process beside the control plane with the admin kubeconfig, no image and no pod.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path

from tiergate_kits.devcluster import build

log = logging.getLogger(__name__)

MODULE = "github.com/argoproj/argo-rollouts"
BINARY = "argo-rollouts"
CRD_NAMES = (
    "rollouts.argoproj.io",
    "analysistemplates.argoproj.io",
    "analysisruns.argoproj.io",
)


class ArgoError(RuntimeError):
    """The Argo Rollouts controller or its CRDs are not available."""


def binary(versions: build.Versions | None = None) -> Path:
    """The built controller, or `ArgoError` naming the command that builds it."""
    path = build.bin_dir(versions) / BINARY
    if not path.is_file():
        raise ArgoError(f"{path} is missing: run `tiergate dev build --group argo`")
    return path


def crd_dir(versions: build.Versions | None = None) -> Path:
    """``manifests/crds`` of the pinned module version in the Go module cache (downloaded if absent)."""
    v = versions or build.load_versions()
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{v.argo_rollouts}"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=build.cache_root() if build.cache_root().is_dir() else None,
    )
    if done.returncode != 0:
        raise ArgoError(f"go mod download {MODULE}@{v.argo_rollouts} failed: {done.stderr.strip()}")
    path = Path(json.loads(done.stdout)["Dir"]) / "manifests" / "crds"
    if not path.is_dir():
        raise ArgoError(f"{path} is missing from the module")
    return path


def crd_files(versions: build.Versions | None = None) -> list[Path]:
    """The CRD manifests to apply (the kustomization file left out)."""
    return sorted(p for p in crd_dir(versions).glob("*-crd.yaml"))


def install_crds(kubectl: str, kubeconfig: Path) -> None:
    """Apply the CRDs server-side (they are too big for a client-side apply) and wait until Established."""
    base = [kubectl, f"--kubeconfig={kubeconfig}"]
    args = ["apply", "--server-side", "--force-conflicts"]
    for path in crd_files():
        args += ["-f", str(path)]
    _kubectl([*base, *args])
    # Right after the apply a CRD may have no status yet, which `kubectl wait` takes for an error.
    deadline = time.monotonic() + 60
    wait = [*base, "wait", "--for=condition=Established", "--timeout=30s", *(f"crd/{n}" for n in CRD_NAMES)]
    while True:
        try:
            _kubectl(wait)
            break
        except ArgoError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    log.info("Argo Rollouts CRDs installed version=%s", build.load_versions().argo_rollouts)


def _kubectl(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise ArgoError(f"kubectl {argv[2]} of the Argo Rollouts CRDs failed: {done.stderr.strip()}")


def controller_argv(kubeconfig: Path, metrics_port: int, healthz_port: int) -> list[str]:
    """The controller's command line: cluster-wide, no leader election, ports of our choosing.

    Its default ports (8080, 8090) listen on every address, where pod processes also listen.
    """
    return [
        str(binary()),
        f"--kubeconfig={kubeconfig}",
        f"--metricsPort={metrics_port}",
        f"--healthzPort={healthz_port}",
        "--leader-elect=false",
        "--loglevel=info",
    ]
