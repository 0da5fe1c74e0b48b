"""What the kind e2e step would cost on this machine now, from what its cache is missing.

CI runs the e2e suite on kind (``scripts/kind/ci.sh``) only when it fits in its budget after
setup, lint and the tests. Its cost depends on what is already built: a warm cache pays the run
alone (cluster, chart, tests: about 7 minutes), a cold one also pays every Go tool, Debian base
and image. So the estimate sums, for each step whose product is missing (or whose input is
rebuilt), that step's own seconds as measured on this machine (its latest build in
``$TIERGATE_CACHE/kind/timings.log``, or a Go binary's ``build-info.json`` record), else a
default measured on a quiet 2-core machine. Nothing here runs a build or talks to Docker.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tiergate_kits.devcluster import build

# Seconds of each step from cold on a quiet 2-core VM, after setup (Go module and build caches
# filled by it): helm, CoreDNS, crictl, the bases (36-59 s each), images and run from such a run;
# the control plane from the README's empty-cache build. kubelet, kubeadm, kube-proxy and kind
# have no quiet figure yet: theirs were measured right after setup at load average 8-15, so they
# err long.
DEFAULT_SECONDS: dict[str, int] = {
    "etcd": 76,
    "kwok": 120,
    "kube-apiserver": 410,
    "kube-controller-manager": 118,
    "kube-scheduler": 11,
    "kubectl": 63,
    "kubelet": 110,
    "kubeadm": 60,
    "kube-proxy": 42,
    "kind": 34,
    "coredns": 162,
    "crictl": 57,
    "helm": 116,
    "debian-packages": 60,
    "rootfs-node": 59,
    "rootfs-component": 36,
    "rootfs-python": 45,
    "rootfs-prometheus": 50,
    "component-images": 55,
    "node-image": 140,
    "tiergate-image": 139,
    "run": 420,
}

# Image steps: (step, the Docker images it makes, the cache files it makes, steps it builds on).
ROOTFS_IMAGES = {
    "rootfs-node": "tiergate/kind-rootfs:bookworm",
    "rootfs-component": "tiergate/k8s-component-base:bookworm",
    "rootfs-python": "tiergate/python-base:bookworm",
    "rootfs-prometheus": "tiergate/prometheus-base:bookworm",
}
IMAGE_INPUTS = {
    "component-images": ("rootfs-component",),
    "node-image": ("component-images", "rootfs-node"),
    "tiergate-image": ("rootfs-python", "rootfs-prometheus"),
}
RUN_STEPS = ("kind-up", "chart-install", "e2e-total")
TIERGATE_IMAGE = "tiergate:dev"


@dataclass(frozen=True)
class Entry:
    """One line of timings.log: a step, when it ended, its seconds, whether it built."""

    step: str
    end: float
    seconds: int
    built: bool
    rc: str | None

    @property
    def start(self) -> float:
        """When the step started (its end minus its seconds)."""
        return self.end - self.seconds


@dataclass(frozen=True)
class Part:
    """One missing step of the estimate and where its seconds come from."""

    step: str
    seconds: int
    source: str


@dataclass(frozen=True)
class Estimate:
    """The parts of a cold kind run and whether it fits the budget."""

    parts: list[Part]
    used: int
    budget: int

    @property
    def total(self) -> int:
        """The estimated seconds of the kind step."""
        return sum(p.seconds for p in self.parts)

    @property
    def fits(self) -> bool:
        """Whether what CI used so far plus the estimate stays within the budget."""
        return self.used + self.total <= self.budget


def parse_timings(text: str) -> list[Entry]:
    """The entries of timings.log (lines ``TIME step=NAME seconds=N [built=0|1] [rc=N] ...``)."""
    entries: list[Entry] = []
    for line in text.splitlines():
        stamp, _, rest = line.partition(" ")
        fields = dict(f.split("=", 1) for f in rest.split() if "=" in f)
        try:
            end = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            seconds = int(fields["seconds"])
            step = fields["step"]
        except (KeyError, ValueError):
            continue
        entries.append(Entry(step, end, seconds, fields.get("built", "1") != "0", fields.get("rc")))
    return entries


def _inside(inner: Entry, outer: Entry) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end


def own_seconds(entries: list[Entry]) -> list[int]:
    """Each entry's seconds without those of the steps timed inside it (logged before it)."""
    own: list[int] = []
    for i, outer in enumerate(entries):
        inner = [j for j in range(i) if _inside(entries[j], outer)]
        direct = [j for j in inner if not any(k > j and _inside(entries[j], entries[k]) for k in inner)]
        own.append(max(0, outer.seconds - sum(entries[j].seconds for j in direct)))
    return own


def measured(entries: list[Entry]) -> dict[str, int]:
    """Each step's own seconds at its latest build, and ``run``: the latest passing e2e run's.

    The run is the cluster, the chart install and the tests of that ``e2e-total``, without the
    builds timed inside it.
    """
    own = own_seconds(entries)
    out: dict[str, int] = {}
    for entry, seconds in zip(entries, own, strict=True):
        if entry.built and entry.step not in RUN_STEPS:
            out[entry.step] = seconds
    for i in reversed(range(len(entries))):
        total = entries[i]
        if total.step == "e2e-total" and total.rc == "0":
            out["run"] = own[i] + sum(
                own[j] for j in range(i) if entries[j].step in RUN_STEPS and _inside(entries[j], total)
            )
            break
    return out


def present_images(docker_data: Path) -> set[str]:
    """The image tags our dockerd's data root holds (read from disk, no engine needed)."""
    repositories = docker_data / "image" / "overlay2" / "repositories.json"
    if not repositories.is_file():
        return set()
    data = json.loads(repositories.read_text()).get("Repositories", {})
    return {tag for tags in data.values() for tag in tags}


def _stamp_name(image: str) -> str:
    return "rootfs-" + image.replace("/", "_").replace(":", "_")


def missing_steps(
    cache: Path,
    images: set[str],
    source_key: str | None = None,
    which: Callable[[str], str | None] | None = None,
) -> list[str]:
    """The steps a kind run would build now, in build order (the run itself not included)."""
    which = which or shutil.which
    versions = build.load_versions()
    kind = cache / "kind"
    stamps, archives = kind / "stamps", kind / "images"
    bin_dir = cache / "k8s" / versions.kubernetes / "bin"
    steps = [name for name in (*build.BINARIES, *build.KIND_BINARIES) if not (bin_dir / name).is_file()]
    if not (which("debootstrap") and which("dockerd") and which("gcc")):
        steps.append("debian-packages")
    rebuilt = {
        step
        for step, image in ROOTFS_IMAGES.items()
        if image not in images or not (stamps / _stamp_name(image)).is_file()
    }
    products = {
        "component-images": (stamps / "components").is_file()
        and (archives / f"k8s-components-{versions.kubernetes}.tar").is_file(),
        "node-image": (stamps / "node-image").is_file()
        and f"tiergate/kind-node:{versions.kubernetes}" in images,
        "tiergate-image": _tiergate_stamp_ok(stamps / "tiergate-image", source_key)
        and (archives / "tiergate-dev.tar").is_file()
        and TIERGATE_IMAGE in images,
    }
    for step, inputs in IMAGE_INPUTS.items():
        if not products[step] or rebuilt.intersection(inputs):
            rebuilt.add(step)
    steps += [step for step in (*ROOTFS_IMAGES, *IMAGE_INPUTS) if step in rebuilt]
    return steps


def _tiergate_stamp_ok(stamp: Path, source_key: str | None) -> bool:
    if not stamp.is_file():
        return False
    return source_key is None or stamp.read_text().startswith(f"{source_key}-")


def estimate(
    steps: Iterable[str], timings: dict[str, int], tool_seconds: dict[str, int], used: int, budget: int
) -> Estimate:
    """The missing steps (plus the run) priced by measurement where there is one, else by default."""
    parts = []
    for step in (*steps, "run"):
        if step in tool_seconds:
            parts.append(Part(step, tool_seconds[step], "build-info.json"))
        elif step in timings:
            parts.append(Part(step, timings[step], "timings.log"))
        else:
            parts.append(Part(step, DEFAULT_SECONDS[step], "default"))
    return Estimate(parts, used, budget)


def tool_build_seconds(bin_dir: Path) -> dict[str, int]:
    """Each Go binary's measured build seconds from the cache's build-info.json."""
    info = bin_dir / build.BUILD_INFO
    if not info.is_file():
        return {}
    record = json.loads(info.read_text())
    return {
        name: round(float(data["build_seconds"])) for name, data in record.items() if "build_seconds" in data
    }


def for_cache(
    cache: Path,
    used: int,
    budget: int,
    source_key: str | None,
    images: set[str] | None = None,
    which: Callable[[str], str | None] | None = None,
) -> Estimate:
    """The estimate for the kind cache under ``cache`` ($TIERGATE_CACHE)."""
    kind = cache / "kind"
    log = kind / "timings.log"
    timings = measured(parse_timings(log.read_text())) if log.is_file() else {}
    have = present_images(kind / "docker" / "data") if images is None else images
    bin_dir = cache / "k8s" / build.load_versions().kubernetes / "bin"
    steps = missing_steps(cache, have, source_key, which)
    return estimate(steps, timings, tool_build_seconds(bin_dir), used, budget)


def report(result: Estimate) -> list[str]:
    """The estimate's parts and the decision, as log lines."""
    lines = [f"Estimate part step={p.step} seconds={p.seconds} from={p.source}" for p in result.parts]
    verdict = "run" if result.fits else "skip"
    lines.append(
        f"Kind e2e decision={verdict} estimate_s={result.total} used_s={result.used} budget_s={result.budget}"
        f" total_s={result.used + result.total} missing={len(result.parts) - 1}"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the estimate; exit 0 when it fits, 3 when it does not."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=build.cache_root(), help="$TIERGATE_CACHE")
    parser.add_argument("--used", type=int, default=0, help="seconds CI has used so far")
    parser.add_argument("--budget", type=int, default=85 * 60, help="seconds CI may use in all")
    parser.add_argument(
        "--source-key", help="the working tree's tiergate image key (lib.sh tiergate_source_key)"
    )
    parser.add_argument("--images-file", type=Path, help="image tags present, one a line (another engine's)")
    args = parser.parse_args(argv)
    images = set(args.images_file.read_text().split()) if args.images_file else None
    result = for_cache(args.cache, args.used, args.budget, args.source_key, images)
    for line in report(result):
        print(f"[kind] {line}", file=sys.stderr)
    return 0 if result.fits else 3


if __name__ == "__main__":
    raise SystemExit(main())
