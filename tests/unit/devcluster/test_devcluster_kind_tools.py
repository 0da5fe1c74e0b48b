"""The optional kind build group: pinned in versions.env, built like the control plane."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate_kits.devcluster import build


def test_kind_group_is_pinned_and_separate_from_the_core_binaries() -> None:
    v = build.load_versions()
    tools = {t.name: t for t in build.kind_tools(v)}
    assert set(tools) == set(build.KIND_BINARIES)
    assert not set(build.KIND_BINARIES) & set(build.BINARIES)
    assert tools["kubelet"].version == v.kubernetes and tools["kubelet"].local_replace_version == v.staging
    assert "-X k8s.io/component-base/version.gitVersion=" + v.kubernetes in tools["kubeadm"].ldflags
    assert tools["kind"].module == "sigs.k8s.io/kind" and tools["kind"].version == v.kind
    assert tools["helm"].package == "helm.sh/helm/v3/cmd/helm"
    assert tools["crictl"].package == "sigs.k8s.io/cri-tools/cmd/crictl"


def test_kind_group_refuses_missing_pins() -> None:
    v = build.Versions(kubernetes="v1.35.8", etcd="v3.6.16", kwok="v0.8.0")
    with pytest.raises(RuntimeError, match="kind, coredns, crictl, helm"):
        build.kind_tools(v)


def test_missing_binaries_is_per_group(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIERGATE_CACHE", str(tmp_path))
    v = build.load_versions()
    assert build.missing_binaries(v, group="kind") == list(build.KIND_BINARIES)
    assert build.missing_binaries(v) == list(build.BINARIES)


def test_test_group_is_helm_alone_built_like_in_the_kind_group() -> None:
    v = build.load_versions()
    helm = [t for t in build.kind_tools(v) if t.name == "helm"]
    assert build.group_tools(v, "test") == helm
    assert set(build.TEST_BINARIES) <= set(build.KIND_BINARIES)
