"""Check real HTTP responses against an OpenAPI 3.1 document kept in the repository.

`Contract.client(...)` gives an httpx client whose every response is validated: the route and
status must be documented, and a JSON body must match the documented schema (JSON Schema
2020-12, `jsonschema`). What was seen is recorded, so a test can ask that every documented
operation was exercised, and `routes_of` lists what an app serves, to compare.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route

DOC_URI = "urn:tiergate:openapi"


def _pointer(*parts: str) -> str:
    return "".join("/" + quote(p.replace("~", "~0").replace("/", "~1"), safe="") for p in parts)


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join("[^/:]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


class Contract:
    """One OpenAPI document and the (path, method, status) triples seen against it."""

    def __init__(self, document: Path) -> None:
        self.doc: dict[str, Any] = json.loads(document.read_text())
        self._registry: Registry[Any] = Registry().with_resource(
            DOC_URI, Resource.from_contents(self.doc, default_specification=DRAFT202012)
        )
        self._templates = [(template, _pattern(template)) for template in self.doc["paths"]]
        self.seen: set[tuple[str, str, str]] = set()
        Draft202012Validator.check_schema({"$defs": self.doc["components"]["schemas"]})

    def operations(self) -> set[tuple[str, str]]:
        """Every documented (path template, METHOD)."""
        return {(path, method.upper()) for path, ops in self.doc["paths"].items() for method in ops}

    def template_of(self, path: str, method: str) -> str:
        """The documented template a request path matches (literal paths first)."""
        if path in self.doc["paths"] and method.lower() in self.doc["paths"][path]:
            return path
        for template, pattern in self._templates:
            if pattern.match(path) and method.lower() in self.doc["paths"][template]:
                return template
        raise AssertionError(f"{method} {path} is not in the OpenAPI document")

    def check(self, response: httpx.Response) -> None:
        """Assert the response is documented: route, status, and the body's schema."""
        method = response.request.method
        template = self.template_of(response.request.url.path, method)
        status = str(response.status_code)
        responses = self.doc["paths"][template][method.lower()]["responses"]
        assert status in responses, f"{method} {template} answered {status}, not documented"
        self.seen.add((template, method, status))
        content = responses[status].get("content", {})
        media = response.headers.get("content-type", "").partition(";")[0].strip()
        assert media in content, f"{method} {template} {status} answered {media!r}, not documented"
        if media == "application/json":
            pointer = _pointer(
                "paths", template, method.lower(), "responses", status, "content", media, "schema"
            )
            validator = Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=self._registry)
            validator.validate(response.json())
        for header in responses[status].get("headers", {}):
            assert header.lower() in response.headers, f"{method} {template} {status} lacks {header}"

    def check_raw(self, method: str, url: str, raw: bytes) -> httpx.Response:
        """Check a raw HTTP/1.1 answer (as read from a socket) and return it parsed."""
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
        response = httpx.Response(
            int(status_line.split()[1]), headers=headers, content=body, request=httpx.Request(method, url)
        )
        self.check(response)
        return response

    def client(self, base_url: str, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client that checks every response against the document."""

        async def hook(response: httpx.Response) -> None:
            await response.aread()
            self.check(response)

        return httpx.AsyncClient(base_url=base_url, event_hooks={"response": [hook]}, timeout=30, **kwargs)

    def unseen(self, exempt: set[tuple[str, str, str]] = frozenset()) -> set[tuple[str, str, str]]:  # type: ignore[assignment]
        """Documented (path, METHOD, status) never answered, less `exempt`."""
        documented = {
            (path, method.upper(), status)
            for path, ops in self.doc["paths"].items()
            for method, op in ops.items()
            for status in op["responses"]
        }
        return documented - self.seen - exempt


def routes_of(routes: list[Any]) -> set[tuple[str, str]]:
    """(path, METHOD) of each route an app serves; a route without methods serves GET."""
    served = set()
    for route in routes:
        assert isinstance(route, Route)
        for method in route.methods or {"GET"}:
            if method != "HEAD":
                served.add((route.path, method))
    return served
