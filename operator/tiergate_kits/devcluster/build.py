"""Builds the local control plane binaries from source with the Go toolchain.

The tests and the demo run a real kube-apiserver, kube-controller-manager,
kube-scheduler, etcd and kwok. They are compiled once per machine from the
pinned module versions in ``versions.env`` into a per-version cache directory,
so a checkout needs no downloaded release archives and no container runtime.
A second, optional group (``--group kind``) builds what a kind cluster made
offline needs on top: kubelet, kubeadm, kube-proxy, kind, CoreDNS, crictl
and helm; ``--group test`` only what the default test run needs on top (helm).
Each tool is built from a throwaway wrapper module whose ``replace`` lines
stand in for the upstream module's local-path replaces (Kubernetes staging
modules, etcd sibling modules), which ``go install pkg@version`` refuses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

VERSIONS_FILE = Path(__file__).with_name("versions.env")
BUILD_INFO = "build-info.json"


@dataclass(frozen=True)
class Versions:
    """The pinned versions of the control plane binaries."""

    kubernetes: str
    etcd: str
    kwok: str
    kind: str = ""
    coredns: str = ""
    crictl: str = ""
    helm: str = ""
    argo_rollouts: str = ""

    @property
    def staging(self) -> str:
        """The k8s.io staging module version matching the Kubernetes version."""
        return "v0." + self.kubernetes.removeprefix("v").split(".", 1)[1]


@dataclass(frozen=True)
class Tool:
    """One binary: the module providing it, the main package and the link flags."""

    name: str
    module: str
    version: str
    package: str
    local_replace_version: str
    ldflags: str


def load_versions(path: Path = VERSIONS_FILE) -> Versions:
    """Read the pinned versions from the shell-style versions file."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"')
    return Versions(
        kubernetes=values["KUBERNETES_VERSION"],
        etcd=values["ETCD_VERSION"],
        kwok=values["KWOK_VERSION"],
        kind=values.get("KIND_VERSION", ""),
        coredns=values.get("COREDNS_VERSION", ""),
        crictl=values.get("CRICTL_VERSION", ""),
        helm=values.get("HELM_VERSION", ""),
        argo_rollouts=values.get("ARGO_ROLLOUTS_VERSION", ""),
    )


def cache_root() -> Path:
    """The per-machine cache directory holding built binaries."""
    env = os.environ.get("TIERGATE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tiergate"


def bin_dir(versions: Versions | None = None) -> Path:
    """The directory holding the binaries for the pinned Kubernetes version."""
    v = versions or load_versions()
    return cache_root() / "k8s" / v.kubernetes / "bin"


BINARIES = (
    "etcd",
    "kwok",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
)


KIND_BINARIES = (
    "kubelet",
    "kubeadm",
    "kube-proxy",
    "kind",
    "coredns",
    "crictl",
    "helm",
)

# What the default test run needs beyond the control plane (the chart tests run helm);
# scripts/setup.sh builds this group, the kind steps the whole kind group.
TEST_BINARIES = ("helm",)

# The drill's peer contender (tiergate_kits.drill.argo): the Argo Rollouts controller.
ARGO_BINARIES = ("argo-rollouts",)

GROUPS = {"core": BINARIES, "kind": KIND_BINARIES, "test": TEST_BINARIES, "argo": ARGO_BINARIES}


def missing_binaries(versions: Versions | None = None, group: str = "core") -> list[str]:
    """Names of binaries of a group not yet built for the pinned versions."""
    d = bin_dir(versions)
    return [name for name in GROUPS[group] if not (d / name).is_file()]


def _kube_ldflags(version: str) -> str:
    major, minor = version.removeprefix("v").split(".")[:2]
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pairs = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "0000000000000000000000000000000000000000",
        "buildDate": date,
    }
    flags = [
        f"-X k8s.io/{pkg}.{key}={value}"
        for pkg in ("client-go/pkg/version", "component-base/version")
        for key, value in pairs.items()
    ]
    return " ".join(["-s", "-w", *flags])


def _kube(v: Versions, names: tuple[str, ...]) -> list[Tool]:
    """Kubernetes commands, built from k8s.io/kubernetes with its staging modules pinned."""
    return [
        Tool(
            name=name,
            module="k8s.io/kubernetes",
            version=v.kubernetes,
            package=f"k8s.io/kubernetes/cmd/{name}",
            local_replace_version=v.staging,
            ldflags=_kube_ldflags(v.kubernetes),
        )
        for name in names
    ]


def _module(name: str, module: str, version: str, cmd: str = "", stamp: str = "") -> Tool:
    """A tool built from its own module at ``version``; ``stamp`` is a ``-X var=value`` setting."""
    return Tool(
        name=name,
        module=module,
        version=version,
        package=f"{module}/{cmd}" if cmd else module,
        local_replace_version=version,
        ldflags=f"-s -w -X {stamp}" if stamp else "-s -w",
    )


def tools(v: Versions) -> list[Tool]:
    """The binaries to build, in build order."""
    return [
        _module("etcd", "go.etcd.io/etcd/server/v3", v.etcd),
        _module(
            "kwok",
            "sigs.k8s.io/kwok",
            v.kwok,
            "cmd/kwok",
            f"sigs.k8s.io/kwok/pkg/consts.Version={v.kwok.removeprefix('v')}",
        ),
        *_kube(v, ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")),
    ]


def kind_tools(v: Versions) -> list[Tool]:
    """The extra binaries a kind cluster built offline needs, in build order."""
    missing = [k for k in ("kind", "coredns", "crictl", "helm") if not getattr(v, k)]
    if missing:
        raise RuntimeError(f"versions.env pins no version for: {', '.join(missing)}")
    return [
        *_kube(v, ("kubelet", "kubeadm", "kube-proxy")),
        _module("kind", "sigs.k8s.io/kind", v.kind),
        _module("coredns", "github.com/coredns/coredns", v.coredns),
        _module(
            "crictl",
            "sigs.k8s.io/cri-tools",
            v.crictl,
            "cmd/crictl",
            f"sigs.k8s.io/cri-tools/pkg/version.Version={v.crictl}",
        ),
        _module(
            "helm",
            "helm.sh/helm/v3",
            v.helm,
            "cmd/helm",
            f"helm.sh/helm/v3/internal/version.version={v.helm}",
        ),
    ]


def argo_tools(v: Versions) -> list[Tool]:
    """The Argo Rollouts controller, built from its module like the other tools."""
    if not v.argo_rollouts:
        raise RuntimeError("versions.env pins no version for: argo_rollouts")
    module = "github.com/argoproj/argo-rollouts"
    return [
        _module(
            "argo-rollouts",
            module,
            v.argo_rollouts,
            "cmd/rollouts-controller",
            f"{module}/utils/version.version={v.argo_rollouts.removeprefix('v')}",
        )
    ]


def group_tools(v: Versions, group: str) -> list[Tool]:
    """The tools of a named build group."""
    every = {"core": tools, "argo": argo_tools}.get(group, kind_tools)(v)
    return [t for t in every if t.name in GROUPS[group]]


_REPLACE = re.compile(r"^\s*(?:replace\s+)?(\S+)(?:\s+v\S+)?\s+=>\s+(\S+)(?:\s+(v\S+))?\s*$")


def wrapper_replaces(upstream_gomod: str, local_version: str) -> list[str]:
    """Translate an upstream go.mod's replace lines for use from a wrapper module."""
    out: list[str] = []
    in_block = False
    for raw in upstream_gomod.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        if line.strip() == "replace (":
            in_block = True
            continue
        if in_block and line.strip() == ")":
            in_block = False
            continue
        if not (in_block or line.lstrip().startswith("replace ")):
            continue
        m = _REPLACE.match(line)
        if not m:
            continue
        module, target, target_version = m.groups()
        if "FORBIDDEN" in target:
            continue
        if target.startswith("."):
            out.append(f"{module} => {module} {local_version}")
        elif target_version:
            out.append(f"{module} => {target} {target_version}")
    return out


def _go(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["go", *args], cwd=cwd, env=env, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"go {' '.join(args[:2])} failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def build_tool(tool: Tool, out_dir: Path, work: Path) -> None:
    """Build one binary into out_dir via a generated wrapper module."""
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"}
    mod_dir = work / tool.name
    mod_dir.mkdir(parents=True, exist_ok=True)
    info = json.loads(_go(["mod", "download", "-json", f"{tool.module}@{tool.version}"], mod_dir, env))
    upstream = Path(info["GoMod"]).read_text()
    replaces = wrapper_replaces(upstream, tool.local_replace_version)
    go_line = re.search(r"^go\s+(\S+)", upstream, re.M)
    lines = [
        "module tiergate.local/build/" + tool.name,
        "",
        f"go {go_line.group(1) if go_line else '1.24'}",
        "",
        f"require {tool.module} {tool.version}",
        "",
        *(f"replace {r}" for r in replaces),
        "",
    ]
    (mod_dir / "go.mod").write_text("\n".join(lines))
    _go(["mod", "download"], mod_dir, env)
    target = out_dir / tool.name
    tmp = out_dir / f".{tool.name}.{os.getpid()}.tmp"
    _go(
        ["build", "-mod=mod", "-trimpath", "-ldflags", tool.ldflags, "-o", str(tmp), tool.package],
        mod_dir,
        env,
    )
    tmp.replace(target)


def _stamp(tool: Tool) -> str:
    return f"{tool.module}@{tool.version} {tool.package}\n"


def build(force: bool = False, group: str = "core") -> Path:
    """Build every missing binary of a group for the pinned versions and return the bin dir."""
    if shutil.which("go") is None:
        raise RuntimeError("the Go toolchain (go) is not on PATH; install Go >= 1.25")
    versions = load_versions()
    out_dir = bin_dir(versions)
    out_dir.mkdir(parents=True, exist_ok=True)
    info_path = out_dir / BUILD_INFO
    record: dict[str, dict[str, object]] = json.loads(info_path.read_text()) if info_path.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="tiergate-k8s-build-") as tmp:
        for tool in group_tools(versions, group):
            binary = out_dir / tool.name
            stamp = out_dir / f".{tool.name}.stamp"
            if not force and binary.is_file() and stamp.is_file() and stamp.read_text() == _stamp(tool):
                log.info("Binary already built name=%s version=%s", tool.name, tool.version)
                continue
            log.info("Building binary name=%s version=%s", tool.name, tool.version)
            started = time.monotonic()
            build_tool(tool, out_dir, Path(tmp))
            seconds = round(time.monotonic() - started, 1)
            stamp.write_text(_stamp(tool))
            record[tool.name] = {
                "module": tool.module,
                "version": tool.version,
                "build_seconds": seconds,
                "bytes": binary.stat().st_size,
            }
            info_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            log.info(
                "Built binary name=%s seconds=%s bytes=%s",
                tool.name,
                seconds,
                binary.stat().st_size,
            )
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tiergate_kits.devcluster.build``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="rebuild even when stamped")
    parser.add_argument("--group", choices=sorted(GROUPS), default="core", help="which binaries to build")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        out = build(force=args.force, group=args.group)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
