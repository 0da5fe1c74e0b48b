"""Leader election on a coordination.k8s.io Lease, so two operator replicas never both act.

The standby polls; the leader renews well inside the lease duration and steps down (the process
exits and its Deployment restarts it as a standby) the moment it cannot prove it still leads.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("tiergate.lease")


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderLease:
    """Acquire and keep one Lease."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
    ) -> None:
        self._api = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration

    def _try(self) -> bool:
        now = _now()
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=int(self.duration),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            try:
                self._api.create_namespaced_lease(self.namespace, body)
            except ApiException as create_exc:
                if create_exc.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = (
            renewed is None or renewed + timedelta(seconds=spec.lease_duration_seconds or self.duration) < now
        )
        if holder not in (None, "", self.identity) and not expired:
            return False
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(self.duration)
        try:
            self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Wait until this process holds the lease."""
        announced = False
        while True:
            try:
                if await asyncio.to_thread(self._try):
                    log.info(
                        "Acquired leadership lease=%s/%s identity=%s",
                        self.namespace,
                        self.name,
                        self.identity,
                    )
                    return
            except ApiException as exc:
                log.warning(
                    "Lease check failed lease=%s/%s status=%s",
                    self.namespace,
                    self.name,
                    exc.status,
                )
            if not announced:
                log.info("Standing by for leadership lease=%s/%s", self.namespace, self.name)
                announced = True
            await asyncio.sleep(self.duration / 3)

    async def keep(self) -> None:
        """Renew until renewal fails for longer than the lease; then return (leadership lost)."""
        last_ok = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.duration / 3)
            try:
                ok = await asyncio.to_thread(self._try)
            except ApiException:
                ok = False
            now = asyncio.get_running_loop().time()
            if ok:
                last_ok = now
            elif now - last_ok > self.duration * 2 / 3:
                log.error(
                    "Lost leadership lease=%s/%s identity=%s",
                    self.namespace,
                    self.name,
                    self.identity,
                )
                return
