"""The control plane build (pinned versions, wrapper-module replaces) and kwok's config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tiergate_kits.devcluster import build
from tiergate_kits.devcluster.cluster import KWOK_STAGES

K8S_GOMOD = """module k8s.io/kubernetes

go 1.25.0

require (
\tk8s.io/api v0.0.0
\tgithub.com/foo/bar v1.2.3
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go // comment
\tgithub.com/x/y v1.0.0 => github.com/x/y-fork v1.0.1
)
replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_wrapper_replaces_pins_local_modules_and_keeps_remote_ones() -> None:
    assert build.wrapper_replaces(K8S_GOMOD, "v0.35.8") == [
        "k8s.io/api => k8s.io/api v0.35.8",
        "k8s.io/client-go => k8s.io/client-go v0.35.8",
        "github.com/x/y => github.com/x/y-fork v1.0.1",
    ]


def test_versions_file_pins_135_and_etcd_36() -> None:
    v = build.load_versions()
    assert v.kubernetes.startswith("v1.35.")
    assert v.staging == "v0.35." + v.kubernetes.rsplit(".", 1)[1]
    assert v.etcd.startswith("v3.6.")
    assert v.kwok.startswith("v0.")


def test_kube_tools_carry_version_ldflags() -> None:
    v = build.Versions(kubernetes="v1.35.8", etcd="v3.6.16", kwok="v0.8.0")
    tools = {t.name: t for t in build.tools(v)}
    assert set(tools) == set(build.BINARIES)
    api = tools["kube-apiserver"]
    assert "-X k8s.io/component-base/version.gitVersion=v1.35.8" in api.ldflags
    assert "-X k8s.io/component-base/version.gitMinor=35" in api.ldflags
    assert api.local_replace_version == "v0.35.8"
    assert tools["etcd"].package == "go.etcd.io/etcd/server/v3"


def test_bin_dir_follows_tiergate_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIERGATE_CACHE", str(tmp_path))
    v = build.Versions(kubernetes="v1.35.8", etcd="v3.6.16", kwok="v0.8.0")
    assert build.bin_dir(v) == tmp_path / "k8s" / "v1.35.8" / "bin"
    assert build.missing_binaries(v) == list(build.BINARIES)


def test_kwok_is_given_node_stages_only() -> None:
    stages = list(yaml.safe_load_all(KWOK_STAGES))
    assert stages
    assert {s["kind"] for s in stages} == {"Stage"}
    assert {s["spec"]["resourceRef"]["kind"] for s in stages} == {"Node"}
