"""An async client of the replay service's HTTP API, for the CLI and the operator.

It speaks the wire form only (filters as dicts of ``from``, ``to``, ``customer``, ``tier``,
``revision``, ``reason``, ``traffic_class``, ``replayed``), so callers above need nothing
from the replay package. `halt_filter` turns a SenderTier's ``status.halt`` into the filter
of the messages that the halted revision discarded in its window; the operator's
``spec.replay.auto`` and ``tiergate replay start --from-halt`` both use it.

Errors::

    ReplayApiError      the service answered 4xx/5xx (status, code, message, field)
    ReplayUnavailable   the service could not be reached (httpx's errors, mapped here once)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

from tiergate.api.v1alpha1 import HaltStatus
from tiergate.errors import TiergateError, TransientError


class ReplayUnavailable(TransientError):
    """The replay service could not be reached or did not answer in time (httpx's errors, mapped)."""


class ReplayApiError(TiergateError):
    """The replay service refused or failed a request."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def halt_filter(tier: str, halt: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The discards of a halt: this tier, the halted revision, inside its window (to now if open)."""
    parsed = HaltStatus.model_validate(dict(halt))
    end = parsed.window_end or now or datetime.now(UTC)
    return {
        "tier": [tier],
        "revision": [parsed.revision],
        "from": _utc(parsed.window_start).isoformat(),
        "to": _utc(end).isoformat(),
    }


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _query(filter: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for name, value in (filter or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            params.append((name, "true" if value else "false"))
        elif isinstance(value, datetime):
            params.append((name, _utc(value).isoformat()))
        elif isinstance(value, list | tuple):
            params.extend((name, str(v)) for v in value)
        else:
            params.append((name, str(value)))
    return params


class ReplayClient:
    """`ReplayClient(base_url, token)`; use as an async context manager or call `close`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> ReplayClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, *, params: list[tuple[str, str]] | None = None, json: Any = None
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, params=tuple(params or ()), json=json)
        except httpx.HTTPError as exc:
            raise ReplayUnavailable(f"replay service unreachable: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:200]}
            raise ReplayApiError(
                response.status_code, str(error.get("code")), str(error.get("message")), error.get("field")
            )
        body: dict[str, Any] = response.json()
        return body

    async def list_discards(
        self, filter: Mapping[str, Any] | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of discards: ``{"items": [...], "next_cursor": ...}``."""
        params = [*_query(filter), ("limit", str(limit))]
        if cursor:
            params.append(("cursor", cursor))
        return await self._call("GET", "/v1/discards", params=params)

    async def counts(
        self, group_by: str = "reason", filter: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Discard counts: ``{"group_by": ..., "counts": {value: n}, "total": n}``."""
        return await self._call(
            "GET", "/v1/discards/counts", params=[*_query(filter), ("group_by", group_by)]
        )

    async def create_job(
        self,
        filter: Mapping[str, Any],
        *,
        rate: float | None = None,
        dry_run: bool = False,
        max_age: float | str | None = None,
        allow_concurrent: bool = False,
        source: str | None = None,
        everything: bool = False,
    ) -> dict[str, Any]:
        """Start a replay job; returns its view (``id``, ``state``, counters...).

        An empty `filter` is refused by the service unless `everything` says so.
        """
        body: dict[str, Any] = {
            "filter": dict(filter),
            "dry_run": dry_run,
            "allow_concurrent": allow_concurrent,
        }
        if everything:
            body["all"] = True
        if rate is not None:
            body["rate"] = rate
        if max_age is not None:
            body["max_age"] = max_age
        if source is not None:
            body["source"] = source
        return await self._call("POST", "/v1/replays", json=body)

    async def get_job(self, job_id: str) -> dict[str, Any]:
        """One job's view."""
        return await self._call("GET", f"/v1/replays/{job_id}")

    async def list_jobs(self, states: Sequence[str] = (), limit: int = 100) -> list[dict[str, Any]]:
        """Jobs, newest first."""
        params = [("state", s) for s in states] + [("limit", str(limit))]
        items: list[dict[str, Any]] = (await self._call("GET", "/v1/replays", params=params))["items"]
        return items

    async def pause(self, job_id: str) -> dict[str, Any]:
        """Pause a job."""
        return await self._call("POST", f"/v1/replays/{job_id}:pause")

    async def resume(self, job_id: str) -> dict[str, Any]:
        """Resume a paused job."""
        return await self._call("POST", f"/v1/replays/{job_id}:resume")

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job."""
        return await self._call("POST", f"/v1/replays/{job_id}:cancel")
