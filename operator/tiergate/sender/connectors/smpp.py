"""SMPP 3.4 connector on aiosmpplib, with our own window, correlation and status mapping.

aiosmpplib keeps the session (bind transceiver, enquire_link, reconnect with backoff, long
message splitting, PDU encoding and decoding); this module turns its queue-and-hook model
into a call that returns the SMSC's message id or raises a classified error. A submit whose
answer timed out is withdrawn from the outbox before it is sent, which keeps resends after
a timeout rare.

Four changes to how aiosmpplib runs, each measured (see bench/sender_bench.py):

- its correlator scanned every stored correlation on each PDU (quadratic in the rate), so
  `_Correlator` sweeps at most once a second and keeps receipt correlations only for
  segmented submits;
- PDUs written in one loop iteration leave in one ``send`` (`_CorkedWriter`), not one
  system call each;
- a delivery receipt of a single-part message is answered (``deliver_sm_resp``) only after
  the worker has stored it, so a crash between the two makes the SMSC deliver it again
  instead of losing it. Receipts of segmented messages keep aiosmpplib's own handling;
- the common receipt (plain text whose ``id``/``stat``/``err`` part is in the characters
  GSM 03.38, IA5 and Latin-1 all write as ASCII) is read straight from the PDU bytes
  (`fast_receipt`); anything else goes through aiosmpplib's decoder, which decodes GSM
  text a character at a time and was a sixth of the worker's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import re
import struct
import time
from collections.abc import Callable
from typing import Any

from aiosmpplib import (
    ESME,
    NPI,
    TON,
    AbstractBroker,
    AbstractHook,
    AbstractThrottleHandler,
    DeliverSm,
    DeliverSmResp,
    PhoneNumber,
    SmppMessage,
    SmppSessionState,
    SubmitSm,
    SubmitSmResp,
)
from aiosmpplib.correlator import SimpleCorrelator
from aiosmpplib.protocol import DEFAULT_ENCODING, PDU_HEADER_LENGTH, PduHeader
from aiosmpplib.retrytimer import SimpleExponentialBackoff
from aiosmpplib.state import (
    MESSAGE_PAYLOAD,
    RECEIPTED_MESSAGE_ID,
    SAR_MSG_REF_NUM,
    SAR_SEGMENT_SEQNUM,
    SAR_TOTAL_SEGMENTS,
    SmppCommand,
)

from tiergate.sender.connectors.base import Connector, Outbound, Receipt
from tiergate.sender.errors import (
    PermanentError,
    ThrottledError,
    TransientError,
    UnavailableError,
    UpstreamError,
)

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


@functools.lru_cache(maxsize=1024)
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

    def has_delivery(self, smsc_message_id: str) -> bool:
        """Whether a receipt for this SMSC id needs aiosmpplib's segment correlation."""
        return bool(self._delivery_store) and smsc_message_id in self._delivery_store

    async def _remove_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            await super()._remove_expired()


class _AlwaysAllow(AbstractThrottleHandler):  # type: ignore[misc]
    """Throttling lowers the worker's rate for this connector (`tiergate.sender.routing`)."""

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


ReceiptSink = Callable[[Receipt, Callable[[], None]], None]


class _Esme(ESME):  # type: ignore[misc]
    """aiosmpplib's ESME: sockets closed, writes corked, receipts acknowledged once stored."""

    _writer: asyncio.StreamWriter | None
    _reader: asyncio.StreamReader | None
    receipt_sink: ReceiptSink | None = None
    session = 0

    async def connect(self) -> None:
        old = self._writer
        if old is not None and self._session_state != self.bind_mode.session_state:
            self._writer = None
            await _close_writer(old)
        await super().connect()
        if self._writer is not None and self._reader is not None:
            self._writer = _CorkedWriter(self._writer, self._reader)
        self.session += 1

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

    async def _handle_request(self, pdu: bytes, header: PduHeader) -> SmppMessage | None:
        sink = self.receipt_sink
        if sink is None or header.smpp_command != SmppCommand.DELIVER_SM:
            return await super()._handle_request(pdu, header)
        receipt = fast_receipt(pdu, header.pdu_length, self.default_encoding)
        if receipt is None:
            try:
                deliver = DeliverSm.from_pdu(pdu, header, self.default_encoding, self.custom_codecs)
            except ValueError:
                return await super()._handle_request(pdu, header)
            receipt = receipt_of(deliver)
            if receipt is None or deliver.is_segmented():
                return await super()._handle_request(pdu, header)
        if self.correlator.has_delivery(receipt.upstream_id):
            return await super()._handle_request(pdu, header)
        sink(receipt, functools.partial(self.acknowledge, self.session, header.sequence_num))
        return None

    def acknowledge(self, session: int, sequence_num: int) -> None:
        """Answer a deliver_sm, if the session it came on is still the current one."""
        if session == self.session and self._session_state == self.bind_mode.session_state:
            task = asyncio.get_running_loop().create_task(self._send_data(DeliverSmResp(sequence_num)))
            _background.add(task)
            task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


_RECEIPT_FIELD = re.compile(r"(?:^|\s)(id|stat|err):(\S*)", re.IGNORECASE)
_RECEIPT_TEXT = re.compile(r"(?:^|\s)text:", re.IGNORECASE)


def receipt_fields(text: str) -> dict[str, str]:
    """``id``, ``stat`` and ``err`` of a receipt text (SMPP 3.4 appendix B), lower-case keys."""
    head = _RECEIPT_TEXT.split(text, maxsplit=1)[0]
    fields: dict[str, str] = {}
    for key, value in _RECEIPT_FIELD.findall(head):
        fields.setdefault(key.lower(), value)
    return fields


def receipt_of(deliver: DeliverSm) -> Receipt | None:
    """The final delivery receipt a deliver_sm carries, or None (not a receipt, not final)."""
    if not deliver.is_receipt():
        return None
    text = deliver.short_message or deliver.message_payload or ""
    data = receipt_fields(text if isinstance(text, str) else "")
    upstream_id = data.get("id", "")
    if not upstream_id:
        for param in deliver.optional_params or ():
            if param.tag == RECEIPTED_MESSAGE_ID:
                upstream_id = str(param.value)
    stat = data.get("stat", "").upper()
    if not upstream_id or (stat not in DELIVERED_STATES and stat not in FINAL_FAILED_STATES):
        return None
    return Receipt(upstream_id, stat in DELIVERED_STATES, stat, data.get("err", ""))


# Bytes that GSM 03.38 (unpacked), IA5 and Latin-1 all decode to the same ASCII character
# (GSM puts other letters at @, $, [, \\, ], ^, _, `, {, |, }, ~ and below space).
_SAME_IN_ALL = bytes([*range(0x20, 0x24), *range(0x25, 0x40), *range(0x41, 0x5B), *range(0x61, 0x7B)])
_TEXT_CODINGS = frozenset({1, 3})  # IA5, Latin-1; 0 is the session's default alphabet
_ASCII_DEFAULTS = frozenset({DEFAULT_ENCODING, "ascii", "latin_1"})
_SEGMENT_TAGS = frozenset({SAR_MSG_REF_NUM, SAR_SEGMENT_SEQNUM, SAR_TOTAL_SEGMENTS, MESSAGE_PAYLOAD})
_NOT_ID_FIELDS = re.compile(r"(?:^|\s)text:", re.IGNORECASE)


def _skip_cstring(pdu: bytes, index: int) -> int:
    end = pdu.index(0, index)
    return end + 1


def fast_receipt(pdu: bytes, length: int, default_encoding: str = DEFAULT_ENCODING) -> Receipt | None:
    """The final receipt a deliver_sm carries, read from its bytes; None when unsure.

    None means "ask aiosmpplib": not a receipt, segmented, a long or unusual text, an id
    only in a TLV. It never answers differently from `receipt_of` on the decoded PDU; only
    the prefix of the text up to the first character the alphabets disagree on is read,
    and it is used only if the receipt's ``text:`` part starts inside it (or it is all).
    """
    try:
        index = _skip_cstring(pdu, PDU_HEADER_LENGTH) + 2  # service_type, source ton/npi
        index = _skip_cstring(pdu, index) + 2  # source_addr, destination ton/npi
        index = _skip_cstring(pdu, index)  # destination_addr
        esm_class = pdu[index]
        if (esm_class & 0b00111100) != 0b00000100 or esm_class & 0b01000000:
            return None
        index = _skip_cstring(pdu, index + 3)  # esm_class, protocol_id, priority, schedule time
        index = _skip_cstring(pdu, index) + 2  # validity_period, registered_delivery, replace
        coding, sm_length = pdu[index], pdu[index + 2]
        index += 3
        text = pdu[index : index + sm_length]
        if not text or len(text) != sm_length:
            return None
        if coding not in _TEXT_CODINGS and not (coding == 0 and default_encoding in _ASCII_DEFAULTS):
            return None
        tlv = index + sm_length
        while tlv + 4 <= length:
            tag, size = struct.unpack_from("!HH", pdu, tlv)
            if tag in _SEGMENT_TAGS:
                return None
            tlv += 4 + size
    except (IndexError, ValueError, struct.error):
        return None
    odd = text.translate(None, _SAME_IN_ALL)
    prefix = text if not odd else text[: text.index(odd[0])]
    decoded = prefix.decode("ascii")
    if odd and _NOT_ID_FIELDS.search(decoded) is None:
        return None
    fields = receipt_fields(decoded)
    upstream_id = fields.get("id", "")
    stat = fields.get("stat", "").upper()
    if not upstream_id or (stat not in DELIVERED_STATES and stat not in FINAL_FAILED_STATES):
        return None
    return Receipt(upstream_id, stat in DELIVERED_STATES, stat, fields.get("err", ""))


class _CorkedWriter(asyncio.StreamWriter):
    """A stream writer that sends everything written in one loop iteration in one go."""

    FLUSH_AT = 64 * 1024

    def __init__(self, inner: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
        transport = inner.transport
        super().__init__(transport, transport.get_protocol(), reader, asyncio.get_running_loop())
        self._inner = inner  # a StreamWriter closes its transport when collected
        self._chunks: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._chunks:
            asyncio.get_running_loop().call_soon(self.flush)
        self._chunks.append(bytes(data))
        self._size += len(data)

    def flush(self) -> None:
        """Hand what is buffered to the transport."""
        if not self._chunks:
            return
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self._size >= self.FLUSH_AT:
            self.flush()
        await super().drain()

    def write_eof(self) -> None:
        self.flush()
        super().write_eof()

    def close(self) -> None:
        self.flush()
        super().close()


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


def _expire(future: asyncio.Future[str]) -> None:
    if not future.done():
        future.set_exception(TransientError("No submit_sm_resp in time", code="timeout"))


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
        ack_after_store: bool = True,
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
        if ack_after_store:
            self._esme.receipt_sink = self._on_receipt_to_store

    def describe(self) -> str:
        """The SMSC's URL."""
        return f"smpp://{self.host}:{self.port}"

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
                    self._fail_pending(UnavailableError("SMPP session lost", code="unbound"))
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
                validity_period=message.validity,
                log_id=log_id,
            )
        except ValueError as exc:
            self._pending.pop(log_id, None)
            raise PermanentError(f"Message cannot be encoded for SMPP: {exc}", code="encode") from None
        expiry = asyncio.get_running_loop().call_later(self.submit_timeout, _expire, future)
        try:
            await self._outbox.enqueue(submit)
            return await future
        finally:
            expiry.cancel()
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
            future.set_exception(UnavailableError(f"Transport error: {error!r}", code="transport"))

    async def _on_deliver(self, deliver: DeliverSm) -> None:
        receipt = receipt_of(deliver)
        if receipt is None:
            return
        try:
            self._deliver_receipt(receipt)
        except Exception:
            log.exception("Receipt not recorded upstream_id=%s", receipt.upstream_id)

    def _on_receipt_to_store(self, receipt: Receipt, ack: Callable[[], None]) -> None:
        if self._receipt_handler is None:
            ack()
            return
        # After the wake-ups already queued, so the submit this receipt answers is known first.
        asyncio.get_running_loop().call_soon(self._deliver_receipt, dataclasses.replace(receipt, ack=ack))

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
        self._fail_pending(UnavailableError("SMPP connector closed", code="closed"))
