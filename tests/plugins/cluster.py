"""Pytest fixtures giving tests a real Kubernetes API server.

If ``KUBECONFIG`` is set, that cluster is used unchanged (a user's kind, or CI's).
Otherwise one local control plane (``tiergate_kits.devcluster.LocalCluster``) is
started for the session in a temporary directory, building its binaries first
if this machine has none yet. Tests that need it are marked ``cluster``.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tiergate_kits.devcluster import build
from tiergate_kits.devcluster.cluster import STATE_FILE, LocalCluster


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster | None]:
    """The session's local control plane, or None when KUBECONFIG names another cluster.

    A KUBECONFIG written by `tiergate dev up` counts as local (processes run on this
    machine) but is neither started nor stopped here.
    """
    if os.environ.get("KUBECONFIG"):
        workdir = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0]).parent
        yield LocalCluster(workdir) if (workdir / STATE_FILE).is_file() else None
        return
    missing = build.missing_binaries()
    if missing:
        sys.stderr.write(
            f"\n[cluster] building control plane binaries {missing} into {build.bin_dir()}"
            " (first run on this machine; takes many minutes)\n"
        )
        build.build()
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), nodes=3)
    seconds = cluster.start()
    sys.stderr.write(f"\n[cluster] local control plane ready in {seconds}s at {cluster.workdir}\n")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kubeconfig_path(local_cluster: LocalCluster | None) -> Path:
    """Path of the kubeconfig of the cluster the tests run against."""
    if local_cluster is None:
        return Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    return local_cluster.kubeconfig


@pytest.fixture(scope="session")
def kube_api(kubeconfig_path: Path) -> Iterator[client.ApiClient]:
    """A Kubernetes API client for the test cluster."""
    api = config.new_client_from_config(config_file=str(kubeconfig_path))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace (with its default service account ready), deleted afterwards."""
    core = client.CoreV1Api(kube_api)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"tiergate.io/test": "true"}}})
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
