"""Prometheus queries for the health gates, through prometheus-api-client.

A query that cannot be answered raises :class:`PrometheusUnavailable`; an answer with no sample is
``None``. The gate turns both into *inconclusive*, never into a pass.
"""

from __future__ import annotations

import asyncio
import math

from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.exceptions import RequestException

from tiergate.errors import PrometheusUnavailable


class Prometheus:
    """One Prometheus server, queried for single numbers."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self._timeout = timeout
        self._conn = PrometheusConnect(url=url, disable_ssl=True)

    def _query(self, promql: str) -> float | None:
        try:
            result = self._conn.custom_query(promql, params={"timeout": f"{self._timeout:g}s"})
        except (PrometheusApiClientException, RequestException, ValueError) as exc:
            raise PrometheusUnavailable(f"query failed: {exc}") from exc
        if isinstance(result, list):
            if not result:
                return None
            if len(result) > 1:
                raise PrometheusUnavailable(
                    f"query returned {len(result)} series; a check needs one number (use sum())"
                )
            raw = result[0].get("value", [None, None])[1]
        elif isinstance(result, dict) and "value" in result:
            raw = result["value"][1]
        else:
            return None
        value = float(raw)
        return None if math.isnan(value) else value

    async def value(self, promql: str) -> float | None:
        """The single value of an instant query, or None when it returned no sample."""
        return await asyncio.to_thread(self._query, promql)
