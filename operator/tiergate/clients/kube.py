"""The operator's only door to the Kubernetes API: Deployments, ControllerRevisions, pods, status.

Calls go through the official client in a worker thread so the Kopf event loop never blocks.
Writes are server-side apply (Deployments) or JSON patches guarded by ``resourceVersion`` (status),
so a decision made on a stale view is refused instead of applied.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tiergate.api.v1alpha1 import GROUP, PLURAL, VERSION
from tiergate.errors import ConflictError, TransientError

FIELD_MANAGER = "tiergate-operator"


def load_config(kubeconfig: str | None = None, pool_size: int = 32) -> client.ApiClient:
    """An API client from a kubeconfig file, or the in-cluster service account.

    ``pool_size`` matches the operator's worker threads, so concurrent calls reuse connections
    instead of opening and discarding them.
    """
    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


@dataclass(frozen=True)
class PodEndpoint:
    """A pod of a tier that can be probed."""

    name: str
    ip: str | None
    ready: bool


def _transient(exc: ApiException) -> TransientError:
    if exc.status in (409, 422) or (exc.status == 500 and "resourceVersion" in str(exc.body)):
        return ConflictError(f"conflict: {exc.reason}")
    return TransientError(f"API server answered {exc.status}: {exc.reason}")


async def _read(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` in a worker thread; None when the object does not exist."""
    try:
        return await asyncio.to_thread(call, *args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _transient(exc) from exc


class Kube:
    """Typed, async operations the controller needs, and nothing more."""

    def __init__(self, api: client.ApiClient) -> None:
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    async def apply_deployment(self, manifest: Mapping[str, Any]) -> None:
        """Create or update a Deployment by server-side apply, owning only our fields."""
        meta = manifest["metadata"]
        try:
            await asyncio.to_thread(
                self._apps.patch_namespaced_deployment,
                meta["name"],
                meta["namespace"],
                dict(manifest),
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as exc:
            raise _transient(exc) from exc

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas, if it exists."""
        try:
            await asyncio.to_thread(
                self._apps.patch_namespaced_deployment_scale,
                name,
                namespace,
                {"spec": {"replicas": replicas}},
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise _transient(exc) from exc

    async def read_revision(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The data of a ControllerRevision, or None when it does not exist."""
        obj = await _read(self._apps.read_namespaced_controller_revision, name, namespace)
        if obj is None:
            return None
        data: dict[str, Any] = obj.data or {}
        return data

    async def save_revision(
        self,
        namespace: str,
        name: str,
        labels: Mapping[str, str],
        owner: Mapping[str, Any],
        data: Mapping[str, Any],
        number: int,
    ) -> None:
        """Store a signed-off template as a ControllerRevision owned by its SenderTier."""
        body = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(labels),
                "ownerReferences": [dict(owner)],
            },
            "data": dict(data),
            "revision": number,
        }
        try:
            await asyncio.to_thread(self._apps.create_namespaced_controller_revision, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return
            raise _transient(exc) from exc

    async def list_revisions(self, namespace: str, selector: str) -> list[tuple[str, int]]:
        """Names and numbers of the ControllerRevisions matching a label selector."""
        try:
            items = await asyncio.to_thread(
                self._apps.list_namespaced_controller_revision,
                namespace,
                label_selector=selector,
            )
        except ApiException as exc:
            raise _transient(exc) from exc
        return [(i.metadata.name, int(i.revision)) for i in items.items]

    async def delete_revision(self, namespace: str, name: str) -> None:
        """Delete a ControllerRevision; gone already is fine."""
        try:
            await asyncio.to_thread(self._apps.delete_namespaced_controller_revision, name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise _transient(exc) from exc

    async def list_pods(self, namespace: str, selector: str) -> list[PodEndpoint]:
        """The pods matching a label selector, with their IPs and readiness."""
        try:
            pods = await asyncio.to_thread(self._core.list_namespaced_pod, namespace, label_selector=selector)
        except ApiException as exc:
            raise _transient(exc) from exc
        out = []
        for pod in pods.items:
            if pod.metadata.deletion_timestamp is not None:
                continue
            conds = pod.status.conditions or []
            ready = any(c.type == "Ready" and c.status == "True" for c in conds)
            out.append(PodEndpoint(pod.metadata.name, pod.status.pod_ip, ready))
        return out

    async def replace_status(
        self, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace a SenderTier's status, refused if the object changed since ``resource_version``."""
        ops: list[dict[str, Any]] = []
        if resource_version:
            ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version})
        ops.append({"op": "add", "path": "/status", "value": dict(status)})
        try:
            result: dict[str, Any] = await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                ops,
                _content_type="application/json-patch+json",
            )
        except ApiException as exc:
            raise _transient(exc) from exc
        return result

    async def get_tier(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One SenderTier as the API server has it now, or None if it is gone."""
        obj: dict[str, Any] | None = await _read(
            self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
        return obj

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data, decoded, or None if it does not exist."""
        secret = await _read(self._core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    async def patch_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Merge annotations into a SenderTier (a None value removes one): on-call requests."""
        try:
            await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"metadata": {"annotations": dict(annotations)}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            raise _transient(exc) from exc

    async def list_tiers(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every SenderTier in a namespace, or in all namespaces."""
        try:
            if namespace:
                result = await asyncio.to_thread(
                    self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
                )
            else:
                result = await asyncio.to_thread(
                    self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL
                )
        except ApiException as exc:
            raise _transient(exc) from exc
        items: list[dict[str, Any]] = result.get("items", [])
        return items


@dataclass(frozen=True)
class PodTarget:
    """A running pod's scrape address and identity."""

    namespace: str
    name: str
    ip: str
    port: int
    labels: dict[str, str]


def list_pod_targets(
    api: client.ApiClient, selector: str, port_name: str = "http", namespaces: Sequence[str] = ()
) -> list[PodTarget]:
    """Every running pod matching ``selector`` with a port named ``port_name`` (in ``namespaces``, or all)."""
    core = client.CoreV1Api(api)
    if namespaces:
        pods = [p for ns in namespaces for p in core.list_namespaced_pod(ns, label_selector=selector).items]
    else:
        pods = core.list_pod_for_all_namespaces(label_selector=selector).items
    out = []
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None or not pod.status.pod_ip:
            continue
        if pod.status.phase != "Running":
            continue
        for container in pod.spec.containers:
            for port in container.ports or []:
                if port.name == port_name:
                    out.append(
                        PodTarget(
                            pod.metadata.namespace,
                            pod.metadata.name,
                            pod.status.pod_ip,
                            int(port.container_port),
                            dict(pod.metadata.labels or {}),
                        )
                    )
    return out
