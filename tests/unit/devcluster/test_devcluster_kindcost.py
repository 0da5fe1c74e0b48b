"""The kind step's cost estimate: only what is missing, at the seconds measured here, else the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiergate_kits.devcluster import build, kindcost

V = build.load_versions()
ALL_TOOLS = (*build.BINARIES, *build.KIND_BINARIES)
IMAGES = {*kindcost.ROOTFS_IMAGES.values(), f"tiergate/kind-node:{V.kubernetes}", kindcost.TIERGATE_IMAGE}
KEY = "0123456789abcdef"

# A cold e2e run as the scripts log it: children end (and are logged) before the step around them.
COLD_LOG = """\
2026-12-03T10:00:10Z step=dockerd-start seconds=10 built=1 cache_mb=1 docker_data_mb=1
2026-12-03T10:05:10Z step=control-plane seconds=0 built=0 cache_mb=1 docker_data_mb=1
2026-12-03T10:15:10Z step=kind-tools seconds=600 built=1 cache_mb=400 docker_data_mb=1
2026-12-03T10:15:50Z step=control-plane seconds=0 built=0 cache_mb=400 docker_data_mb=1
2026-12-03T10:15:50Z step=kind-tools seconds=0 built=0 cache_mb=400 docker_data_mb=1
2026-12-03T10:16:30Z step=rootfs-component seconds=40 built=1 cache_mb=450 docker_data_mb=130
2026-12-03T10:17:30Z step=component-images seconds=100 built=1 cache_mb=1000 docker_data_mb=700
2026-12-03T10:18:30Z step=rootfs-node seconds=60 built=1 cache_mb=1000 docker_data_mb=1000
2026-12-03T10:21:30Z step=node-image seconds=340 built=1 cache_mb=1000 docker_data_mb=2400
2026-12-03T10:23:10Z step=kind-up seconds=1390 cache_mb=1000 docker_data_mb=3000
2026-12-03T10:24:00Z step=rootfs-python seconds=50 built=1 cache_mb=1000 docker_data_mb=3000
2026-12-03T10:24:45Z step=rootfs-prometheus seconds=45 built=1 cache_mb=1000 docker_data_mb=3000
2026-12-03T10:26:45Z step=tiergate-image seconds=215 built=1 cache_mb=1900 docker_data_mb=3500
2026-12-03T10:28:00Z step=chart-install seconds=290 cache_mb=1900 docker_data_mb=3500
2026-12-03T10:33:00Z step=e2e-total seconds=1980 rc=0
"""
# The same machine later, warm: every step up to date, the run alone.
WARM_LOG = """\
2026-12-03T11:00:02Z step=dockerd-start seconds=2 built=1 cache_mb=1 docker_data_mb=1
2026-12-03T11:00:03Z step=control-plane seconds=1 built=0 cache_mb=1 docker_data_mb=1
2026-12-03T11:00:04Z step=kind-tools seconds=1 built=0 cache_mb=1 docker_data_mb=1
2026-12-03T11:00:07Z step=node-image seconds=3 built=0 cache_mb=1 docker_data_mb=1
2026-12-03T11:01:10Z step=kind-up seconds=70 cache_mb=1 docker_data_mb=1
2026-12-03T11:01:12Z step=tiergate-image seconds=2 built=0 cache_mb=1 docker_data_mb=1
2026-12-03T11:02:20Z step=chart-install seconds=70 cache_mb=1 docker_data_mb=1
2026-12-03T11:07:20Z step=e2e-total seconds=440 rc=0
"""


def test_nested_steps_are_counted_once() -> None:
    entries = kindcost.parse_timings(COLD_LOG)
    own = dict(zip((e.step for e in entries), kindcost.own_seconds(entries), strict=False))
    assert own["component-images"] == 100 - 40  # its base was built inside it
    assert own["node-image"] == 340 - 100 - 60  # component images and node rootfs inside it
    assert own["tiergate-image"] == 215 - 50 - 45
    assert own["kind-up"] == 1390 - 10 - 600 - 340  # the cluster alone
    assert own["e2e-total"] == 1980 - 1390 - 290  # the tests alone


def test_measured_takes_builds_only_and_the_run_of_the_latest_passing_e2e() -> None:
    got = kindcost.measured(kindcost.parse_timings(COLD_LOG + WARM_LOG))
    assert got["node-image"] == 180  # the warm run's up-to-date 3 s (built=0) is not a build
    assert got["rootfs-node"] == 60
    assert got["kind-tools"] == 600
    assert "control-plane" not in got  # never built in these runs
    assert got["run"] == (70 - 2 - 1 - 1 - 3) + (70 - 2) + (440 - 70 - 70)


def test_a_failed_e2e_run_is_not_the_run_cost() -> None:
    failed = WARM_LOG.replace("seconds=440 rc=0", "seconds=200 rc=1")
    assert kindcost.measured(kindcost.parse_timings(COLD_LOG + failed))["run"] == 440 + (290 - 215) + 300


def _warm_cache(root: Path, key: str = KEY) -> Path:
    bins = root / "k8s" / V.kubernetes / "bin"
    bins.mkdir(parents=True)
    for tool in ALL_TOOLS:
        (bins / tool).write_text("")
    stamps, archives = root / "kind" / "stamps", root / "kind" / "images"
    stamps.mkdir(parents=True)
    archives.mkdir(parents=True)
    for image in kindcost.ROOTFS_IMAGES.values():
        (stamps / ("rootfs-" + image.replace("/", "_").replace(":", "_"))).write_text("k")
    (stamps / "components").write_text("k")
    (stamps / "node-image").write_text("k")
    (stamps / "tiergate-image").write_text(f"{key}-1-aaaa-bbbb")
    (archives / f"k8s-components-{V.kubernetes}.tar").write_text("")
    (archives / "tiergate-dev.tar").write_text("")
    repositories = root / "kind" / "docker" / "data" / "image" / "overlay2" / "repositories.json"
    repositories.parent.mkdir(parents=True)
    by_repo: dict[str, dict[str, str]] = {}
    for tag in IMAGES:
        by_repo.setdefault(tag.rsplit(":", 1)[0], {})[tag] = "sha256:0"
    repositories.write_text(json.dumps({"Repositories": by_repo}))
    (root / "kind" / "timings.log").write_text(COLD_LOG + WARM_LOG)
    return root


def _all_there(_: str) -> str:
    return "/usr/bin/x"


def test_an_empty_cache_is_priced_at_the_defaults(tmp_path: Path) -> None:
    steps = kindcost.missing_steps(tmp_path, set(), KEY, which=lambda _: None)
    result = kindcost.estimate(steps, {}, {}, used=1800, budget=5100)
    assert [p.step for p in result.parts] == [
        *ALL_TOOLS,
        "debian-packages",
        *kindcost.ROOTFS_IMAGES,
        "component-images",
        "node-image",
        "tiergate-image",
        "run",
    ]
    assert {p.source for p in result.parts} == {"default"}
    assert result.total == sum(kindcost.DEFAULT_SECONDS.values())
    assert result.fits is (1800 + result.total <= 5100)


def test_a_warm_cache_pays_the_run_alone_at_its_measured_seconds(tmp_path: Path) -> None:
    cache = _warm_cache(tmp_path)
    result = kindcost.for_cache(cache, used=4000, budget=5100, source_key=KEY, which=_all_there)
    assert result.parts == [kindcost.Part("run", 63 + 68 + 300, "timings.log")]
    assert result.fits


def test_a_changed_working_tree_rebuilds_the_tiergate_image_at_its_own_measured_seconds(
    tmp_path: Path,
) -> None:
    cache = _warm_cache(tmp_path, key="fedcba9876543210")
    result = kindcost.for_cache(cache, used=0, budget=5100, source_key=KEY, which=_all_there)
    assert [(p.step, p.seconds, p.source) for p in result.parts][:1] == [
        ("tiergate-image", 120, "timings.log")
    ]


def test_cleared_docker_data_rebuilds_every_image_but_no_binary(tmp_path: Path) -> None:
    cache = _warm_cache(tmp_path)
    steps = kindcost.missing_steps(cache, set(), KEY, which=_all_there)
    assert steps == [*kindcost.ROOTFS_IMAGES, "component-images", "node-image", "tiergate-image"]


def test_a_rebuilt_base_rebuilds_the_images_on_it(tmp_path: Path) -> None:
    cache = _warm_cache(tmp_path)
    steps = kindcost.missing_steps(
        cache, IMAGES - {kindcost.ROOTFS_IMAGES["rootfs-component"]}, KEY, which=_all_there
    )
    assert steps == ["rootfs-component", "component-images", "node-image"]


def test_a_missing_tool_is_priced_at_its_recorded_build(tmp_path: Path) -> None:
    cache = _warm_cache(tmp_path)
    bins = cache / "k8s" / V.kubernetes / "bin"
    (bins / "coredns").unlink()
    (bins / build.BUILD_INFO).write_text(json.dumps({"coredns": {"build_seconds": 201.6}}))
    result = kindcost.for_cache(cache, used=0, budget=5100, source_key=KEY, which=_all_there)
    assert result.parts[0] == kindcost.Part("coredns", 202, "build-info.json")


@pytest.mark.parametrize(("used", "code", "verdict"), [(0, 0, "run"), (5000, 3, "skip")])
def test_main_prints_the_parts_and_the_decision(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    used: int,
    code: int,
    verdict: str,
) -> None:
    monkeypatch.setattr(kindcost.shutil, "which", _all_there)
    cache = _warm_cache(tmp_path)
    assert kindcost.main(["--cache", str(cache), "--used", str(used), "--source-key", KEY]) == code
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[kind] Estimate part step=run seconds=431 from=timings.log"
    assert err[-1] == (
        f"[kind] Kind e2e decision={verdict} estimate_s=431 used_s={used} budget_s=5100"
        f" total_s={used + 431} missing=0"
    )
