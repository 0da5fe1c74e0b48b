"""SMPP 3.4 connector on aiosmpplib, with our own window, correlation and status mapping.

aiosmpplib keeps the session (bind transceiver, enquire_link, reconnect with backoff, long
message splitting); this module turns its queue-and-hook model into a call that returns the
SMSC's message id or raises a classified error. A submit whose answer timed out is withdrawn
from the outbox before it is sent, which keeps resends after a timeout rare.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from aiosmpplib import (
    ESME,
    NPI,
    TON,
    AbstractBroker,
    AbstractHook,
    AbstractThrottleHandler,
    DeliverSm,
    PhoneNumber,
    SmppMessage,
    SmppSessionState,
    SubmitSm,
    SubmitSmResp,
)
from aiosmpplib.correlator import SimpleCorrelator
from aiosmpplib.retrytimer import SimpleExponentialBackoff

from tiergate.sender.connectors.base import Connector, Outbound, Receipt
from tiergate.sender.errors import PermanentError, ThrottledError, TransientError, UpstreamError

log = logging.getLogger(__name__)

THROTTLED_STATUSES = frozenset({"ESME_RTHROTTLED", "ESME_RMSGQFUL"})
PERMANENT_STATUSES = frozenset(
    {
        "ESME_RINVMSGLEN",
        "ESME_RINVSRCADR",
        "ESME_RINVDSTADR",
        "ESME_RINVESMCLASS",
        "ESME_RINVSRCTON",
        "ESME_RINVSRCNPI",
        "ESME_RINVDSTTON",
        "ESME_RINVDSTNPI",
        "ESME_RINVNUMDESTS",
        "ESME_RINVSERTYP",
        "ESME_RINVREGDLVFLG",
        "ESME_RINVDESTFLAG",
        "ESME_RX_P_APPN",
        "ESME_RX_R_APPN",
        "ESME_RINVOPTPARAMVAL",
        "ESME_ROPTPARNOTALLWD",
        "ESME_RINVPARLEN",
    }
)
DELIVERED_STATES = frozenset({"DELIVRD"})
FINAL_FAILED_STATES = frozenset({"EXPIRED", "DELETED", "UNDELIV", "REJECTD", "UNKNOWN"})


def classify_status(name: str, value: int) -> UpstreamError | None:
    """Map a submit_sm_resp command_status to our error, or None for ESME_ROK."""
    if name == "ESME_ROK":
        return None
    code = f"{name}(0x{value:08X})"
    if name in THROTTLED_STATUSES:
        return ThrottledError(f"SMSC throttled the submit: {code}", code=code)
    if name in PERMANENT_STATUSES:
        return PermanentError(f"SMSC rejected the submit: {code}", code=code)
    return TransientError(f"SMSC failed the submit: {code}", code=code)


def source_address(source: str) -> PhoneNumber:
    """SMPP source address for a sender id: international number or alphanumeric."""
    if source.startswith("+"):
        return PhoneNumber(source[1:], TON.INTERNATIONAL, NPI.ISDN)
    if source.isdigit():
        return PhoneNumber(source, TON.INTERNATIONAL, NPI.ISDN)
    return PhoneNumber(source, TON.ALPHANUMERIC, NPI.UNKNOWN)


def destination_address(destination: str) -> PhoneNumber:
    """SMPP destination address for an E.164 number."""
    return PhoneNumber(destination.removeprefix("+"), TON.INTERNATIONAL, NPI.ISDN)


class _Outbox(AbstractBroker):  # type: ignore[misc]
    """The queue aiosmpplib sends from; it skips submits whose caller stopped waiting."""

    def __init__(self, pending: dict[str, asyncio.Future[str]]) -> None:
        self._queue: asyncio.Queue[SmppMessage] = asyncio.Queue()
        self._pending = pending

    async def enqueue(self, message: SmppMessage) -> None:
        self._queue.put_nowait(message)

    async def dequeue(self) -> SmppMessage:
        while True:
            message = await self._queue.get()
            log_id = getattr(message, "log_id", "")
            future = self._pending.get(log_id)
            if not log_id or (future is not None and not future.done()):
                return message


class _Correlator(SimpleCorrelator):  # type: ignore[misc]
    """aiosmpplib's in-memory correlator without its per-PDU cost.

    The stock one scans every stored correlation on each request and response, and keeps
    a receipt correlation for every submit, so it slows down quadratically with the rate
    (about 80 submits/s at 60 s of retention). Receipts of single-part messages are
    matched by the SMSC id in our store, so only segmented submits are kept here, and
    expired entries are swept at most once per `sweep_interval`.
    """

    def __init__(self, name: str, *, sweep_interval: float = 1.0, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.sweep_interval = sweep_interval
        self._last_sweep = time.monotonic()

    async def put_delivery(self, smsc_message_id: str, submit_sm: SubmitSm) -> None:
        if submit_sm.get_segmentation_data()[2] > 0:
            await super().put_delivery(smsc_message_id, submit_sm)

    async def _remove_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            await super()._remove_expired()


class _AlwaysAllow(AbstractThrottleHandler):  # type: ignore[misc]
    """Throttling is handled by the worker's backoff, not inside the session."""

    async def throttled(self) -> None:
        return None

    async def not_throttled(self) -> None:
        return None

    async def allow_request(self) -> bool:
        return True

    async def throttle_delay(self) -> float:
        return 0.0


class _Hook(AbstractHook):  # type: ignore[misc]
    def __init__(self, connector: SmppConnector) -> None:
        self._connector = connector

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        return None

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if isinstance(smpp_message, DeliverSm):
            await self._connector._on_deliver(smpp_message)
        elif isinstance(smpp_message, SubmitSmResp):
            self._connector._on_submit_resp(smpp_message)

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        self._connector._on_send_error(smpp_message, error)


class _Esme(ESME):  # type: ignore[misc]
    """aiosmpplib's ESME, closing the sockets it would otherwise drop unclosed."""

    _writer: asyncio.StreamWriter | None

    async def connect(self) -> None:
        old = self._writer
        if old is not None and self._session_state != self.bind_mode.session_state:
            self._writer = None
            await _close_writer(old)
        await super().connect()

    async def _disconnect(self) -> None:
        writer = self._writer
        await super()._disconnect()
        if writer is not None:
            await _close_writer(writer)

    async def close_socket(self) -> None:
        writer: asyncio.StreamWriter | None = self._writer
        self._writer = None
        if writer is not None:
            await _close_writer(writer)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


class SmppConnector(Connector):
    """An ESME bound as transceiver to one SMSC."""

    kind = "smpp"

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        *,
        window: int = 64,
        rate: float | None = None,
        submit_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        reconnect_min_delay: float = 0.5,
        registered_delivery: bool = True,
    ) -> None:
        super().__init__(window=window, rate=rate)
        self.host = host
        self.port = port
        self.submit_timeout = submit_timeout
        self.registered_delivery = registered_delivery
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._counter = itertools.count(1)
        self._outbox = _Outbox(self._pending)
        self._esme = _Esme(
            smsc_host=host,
            smsc_port=port,
            system_id=system_id,
            password=password,
            enquire_link_interval=float(enquire_link_interval),
            log_level="ERROR",
            hook=_Hook(self),
            broker=self._outbox,
            throttle_handler=_AlwaysAllow(),
            correlator=_Correlator(f"tiergate-{system_id}", max_ttl_delivery=600.0),
            retry_timer=SimpleExponentialBackoff(
                min_delay=max(1, int(reconnect_min_delay * 1000)), max_increases=4
            ),
            socket_timeout=5.0,
        )
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._was_bound = False

    @property
    def bound(self) -> bool:
        """Whether the session is bound as transceiver."""
        return bool(self._esme.session_state == SmppSessionState.BOUND_TRX)

    async def start(self) -> None:
        """Start binding (and rebinding after loss) in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._esme.start(), name="smpp-session")
            self._watch = asyncio.create_task(self._watch_session(), name="smpp-watch")

    async def _watch_session(self) -> None:
        while True:
            bound = self.bound
            if bound != self._was_bound:
                log.info("SMPP session changed host=%s port=%d bound=%s", self.host, self.port, bound)
                self._was_bound = bound
                if not bound:
                    self._fail_pending(TransientError("SMPP session lost", code="unbound"))
            await asyncio.sleep(0.05)

    def _fail_pending(self, error: UpstreamError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    async def _submit(self, message: Outbound) -> str:
        log_id = f"{message.message_id}#{next(self._counter)}"
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[log_id] = future
        try:
            submit = SubmitSm(
                short_message=message.body,
                source=source_address(message.source),
                destination=destination_address(message.destination),
                registered_delivery=1 if self.registered_delivery else 0,
                log_id=log_id,
            )
        except ValueError as exc:
            self._pending.pop(log_id, None)
            raise PermanentError(f"Message cannot be encoded for SMPP: {exc}", code="encode") from None
        try:
            await self._outbox.enqueue(submit)
            return await asyncio.wait_for(asyncio.shield(future), self.submit_timeout)
        except TimeoutError:
            if not future.done():
                future.set_exception(TransientError("No submit_sm_resp in time", code="timeout"))
                future.exception()
            raise TransientError("No submit_sm_resp in time", code="timeout") from None
        finally:
            self._pending.pop(log_id, None)

    def _on_submit_resp(self, resp: SubmitSmResp) -> None:
        future = self._pending.get(resp.log_id)
        if future is None or future.done():
            return
        status = resp.command_status
        error = classify_status(status.name, int(status.value))
        if error is None:
            future.set_result(resp.message_id)
        else:
            future.set_exception(error)

    def _on_send_error(self, message: SmppMessage, error: Exception) -> None:
        future = self._pending.get(getattr(message, "log_id", ""))
        if future is None or future.done():
            return
        if isinstance(error, ValueError):
            future.set_exception(PermanentError(f"Message cannot be sent: {error}", code="encode"))
        else:
            future.set_exception(TransientError(f"Transport error: {error!r}", code="transport"))

    async def _on_deliver(self, deliver: DeliverSm) -> None:
        if not deliver.is_receipt():
            return
        data: dict[str, Any] = dict(deliver.parse_receipt())
        upstream_id = str(data.get("id", ""))
        if not upstream_id:
            return
        stat = str(data.get("stat", "")).upper()
        if stat not in DELIVERED_STATES and stat not in FINAL_FAILED_STATES:
            return
        receipt = Receipt(
            upstream_id=upstream_id,
            delivered=stat in DELIVERED_STATES,
            status=stat,
            error=str(data.get("err", "")),
        )
        try:
            await self._deliver_receipt(receipt)
        except Exception:
            log.exception("Receipt not recorded upstream_id=%s", upstream_id)

    async def close(self) -> None:
        """Wait briefly for answers in flight, then unbind and stop."""
        deadline = time.monotonic() + self.submit_timeout
        while self._pending and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self._watch is not None:
            self._watch.cancel()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(self._esme.stop(), 5.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            await self._esme.close_socket()
        self._fail_pending(TransientError("SMPP connector closed", code="closed"))
