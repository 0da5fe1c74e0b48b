"""The operator's own HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz`` on one port.

Kopf's liveness endpoint exists only once Kopf runs, i.e. on the leader, so a standby replica
waiting for the Lease would fail its probes and be restarted for doing its job. These endpoints
answer on every replica, from the operator's own event loop: a wedged loop stops answering, so
the liveness probe sees what a metrics thread would hide.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tiergate.httpserver import metrics_endpoint


class Role(enum.StrEnum):
    """Where a replica is in leader election."""

    STANDBY = "standby"
    LEADER = "leader"
    STOPPED = "stopped"


@dataclass
class OperatorHealth:
    """What the probes report: the replica's role and whether its operator task still runs."""

    role: Role = Role.STANDBY
    operator: asyncio.Task[None] | None = field(default=None, repr=False)

    def alive(self) -> tuple[bool, str]:
        """Alive unless the leader's Kopf task has ended or the replica is stopping."""
        if self.role is Role.STOPPED:
            return False, "stopping"
        if self.role is Role.LEADER and (self.operator is None or self.operator.done()):
            return False, "the operator task has ended"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """A standby is ready (it waits, as it should); the leader once its operator runs."""
        return self.alive()


def health_app(health: OperatorHealth) -> Starlette:
    """The ASGI app serving the three endpoints."""

    def _answer(result: tuple[bool, str]) -> Response:
        ok, reason = result
        body = {"status": "ok" if ok else "fail", "role": health.role.value, "reason": reason}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def healthz(request: Request) -> Response:
        return _answer(health.alive())

    async def readyz(request: Request) -> Response:
        return _answer(health.ready())

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )
