"""A notification receiver on loopback for the operator's tests, in a thread of the test process.

It plays both receiver formats at once: ``/hook`` checks the generic webhook's signature with the
README's recipe (`tests.plugins.webhooks.signed`), ``/slack`` takes Slack's incoming-webhook JSON.
It records every request with its ``Tiergate-Notification-Id``, so a test counts distinct ids. It
can stop listening (a receiver that is down) and hold the first request of each id unanswered
for a while (so the operator can be killed between the post and the mark).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.plugins.operator import OPERATOR_NS, free_port
from tests.plugins.webhooks import signed

SECRET_NAME = "tiergate-notifications"
SIGNING_KEY = "nsec-test-0123456789abcdef"


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    path: str
    id: str
    body: dict[str, Any]
    signed: bool


class NotificationReceiver:
    """Records the notifications that arrive; can be down, or hold a first delivery unanswered."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.hold_seconds = 0.0
        self.held = threading.Event()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def receivers_yaml(self) -> str:
        """The Secret's receivers.yaml pointing at this receiver (every kind, both formats)."""
        base = f"http://127.0.0.1:{self.port}"
        return json.dumps(
            {
                "receivers": [
                    {"name": "oncall", "url": f"{base}/hook", "secrets": [SIGNING_KEY]},
                    {"name": "chat", "url": f"{base}/slack", "format": "slack"},
                ]
            }
        )

    def ids(self, path: str = "/hook") -> dict[str, list[Received]]:
        """Requests per notification id on one path."""
        out: dict[str, list[Received]] = {}
        with self._lock:
            for r in self.received:
                if r.path == path:
                    out.setdefault(r.id, []).append(r)
        return out

    def kinds(self, tier: str) -> list[str]:
        """The generic webhook's kinds for a tier, one per distinct id, in arrival order."""
        return [rs[0].body["kind"] for rs in self.ids("/hook").values() if rs[0].body["tier"] == tier]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        nid = handler.headers.get("Tiergate-Notification-Id", "")
        ok = handler.path != "/hook" or signed(
            SIGNING_KEY, handler.headers.get("Tiergate-Signature", ""), body
        )
        with self._lock:
            self.received.append(Received(handler.path, nid, json.loads(body), ok))
            first = (handler.path, nid) not in self._seen
            self._seen.add((handler.path, nid))
        if first and self.hold_seconds:
            self.held.set()
            time.sleep(self.hold_seconds)
        handler.send_response(204 if ok else 401)
        handler.end_headers()

    def start(self) -> None:
        """Listen (again, after `stop`)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, *_: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: connections are refused until `start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _put_secret(core: client.CoreV1Api, text: str) -> None:
    body = {"metadata": {"name": SECRET_NAME}, "stringData": {"receivers.yaml": text}}
    try:
        core.create_namespaced_secret(OPERATOR_NS, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(SECRET_NAME, OPERATOR_NS, body)


@pytest.fixture
def notification_receiver(
    kube_api: client.ApiClient, operator_kubeconfig: Any
) -> Iterator[NotificationReceiver]:
    """A running receiver, named by the operator's notification Secret for the test's length."""
    receiver = NotificationReceiver()
    receiver.start()
    core = client.CoreV1Api(kube_api)
    _put_secret(core, receiver.receivers_yaml())
    try:
        yield receiver
    finally:
        receiver.stop()
        core.delete_namespaced_secret(SECRET_NAME, OPERATOR_NS)
