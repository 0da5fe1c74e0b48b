"""Validation and encoding rules for messages accepted by the sender API; pure, no I/O.

A message is checked field by field before anything is stored: E.164 destination, sender
id (numeric up to 15 digits, or up to 11 GSM characters), body encoding (GSM-7 when every
character is in the GSM 03.38 alphabet, extension characters counting double; UCS-2
otherwise) and its segment count (160/153 septets or 70/67 UTF-16 units per segment),
references, customer and traffic class, and the delivery options: a callback URL (https,
or http on loopback when the rules allow it for tests), a ``validity`` (a duration such as
``90s`` or ``2h``, counted from ``send_at`` if given, else from acceptance; or an RFC 3339
time) and a ``send_at`` time, each bounded by the rules. Every problem is reported with the
field it is in, as a JSON-pointer-like path (``destination``, ``messages[3].body``), so a
client can fix all of them in one go.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple
from urllib.parse import urlsplit

import phonenumbers

from tiergate.api.durations import parse_duration
from tiergate.domain.records import Encoding as Encoding
from tiergate.domain.records import ValidMessage as ValidMessage
from tiergate.errors import TiergateError

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67

MESSAGE_FIELDS = frozenset(
    {
        "destination",
        "sender_id",
        "body",
        "customer_id",
        "traffic_class",
        "client_ref",
        "idempotency_key",
        "callback_url",
        "validity",
        "send_at",
    }
)
# Fields the one-pass check leaves to the full one.
_DELIVERY_OPTIONS = frozenset({"callback_url", "validity", "send_at"})
_CUSTOMER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_REFERENCE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class FieldError:
    """One problem, in one field."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """JSON shape of the error."""
        return {"field": self.field, "code": self.code, "message": self.message}


class ValidationFailed(TiergateError):
    """The input has one or more field errors."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = tuple(errors)


@dataclass(frozen=True)
class Rules:
    """Configurable limits of what the API accepts."""

    traffic_classes: frozenset[str] = frozenset({"default"})
    default_traffic_class: str = "default"
    max_segments: int = 6
    max_batch: int = 1000
    max_client_ref: int = 64
    max_idempotency_key: int = 128
    strict_numbers: bool = True
    max_validity: float = 72 * 3600.0
    max_schedule_ahead: float = 7 * 24 * 3600.0
    max_callback_url: int = 2048
    allow_http_loopback_callbacks: bool = False


@dataclass(frozen=True)
class Delivery:
    """What the authenticated customer's configuration adds to its messages."""

    default_callback_url: str | None = None
    can_sign: bool = False


NO_DELIVERY = Delivery()


class BodyInfo(NamedTuple):
    """How a body goes on the air."""

    encoding: Encoding
    units: int
    segments: int


@dataclass
class _Collector:
    prefix: str
    errors: list[FieldError] = field(default_factory=list)

    def add(self, name: str, code: str, message: str) -> None:
        path = f"{self.prefix}.{name}" if self.prefix and name else (self.prefix or name)
        self.errors.append(FieldError(path, code, message))


def is_gsm7(text: str) -> bool:
    """Whether every character is in the GSM 03.38 basic or extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def gsm7_septets(text: str) -> int:
    """Septets a GSM-7 text takes; extension characters count two."""
    return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)


def _gsm7_segments(text: str) -> int:
    total = gsm7_septets(text)
    if total <= GSM7_SINGLE:
        return 1
    segments, used = 1, 0
    for ch in text:
        width = 2 if ch in GSM7_EXTENSION else 1
        if used + width > GSM7_MULTI:
            segments += 1
            used = 0
        used += width
    return segments


def _ucs2_segments(text: str) -> tuple[int, int]:
    widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    total = sum(widths)
    if total <= UCS2_SINGLE:
        return total, 1
    segments, used = 1, 0
    for width in widths:
        if used + width > UCS2_MULTI:
            segments += 1
            used = 0
        used += width
    return total, segments


def body_info_reference(text: str) -> BodyInfo:
    """`body_info` character by character: the definition the fast version is tested against."""
    if is_gsm7(text):
        return BodyInfo(Encoding.GSM7, gsm7_septets(text), _gsm7_segments(text))
    units, segments = _ucs2_segments(text)
    return BodyInfo(Encoding.UCS2, units, segments)


def _class(chars: frozenset[str]) -> str:
    return "".join(re.escape(ch) for ch in sorted(chars))


_GSM7_BASIC_ONLY = re.compile(f"[{_class(GSM7_BASIC)}]*")
_GSM7_ANY = re.compile(f"[{_class(GSM7_BASIC | GSM7_EXTENSION)}]*")
_GSM7_EXTENDED = re.compile(f"[{_class(GSM7_EXTENSION)}]")


def body_info(text: str) -> BodyInfo:
    """Encoding, length in units (septets or UTF-16 units) and segment count of a body."""
    length = len(text)
    if _GSM7_BASIC_ONLY.fullmatch(text):
        segments = 1 if length <= GSM7_SINGLE else -(-length // GSM7_MULTI)
        return BodyInfo(Encoding.GSM7, length, segments)
    if _GSM7_ANY.fullmatch(text):
        septets = length + len(_GSM7_EXTENDED.findall(text))
        if septets <= GSM7_SINGLE:
            return BodyInfo(Encoding.GSM7, septets, 1)
        return BodyInfo(Encoding.GSM7, septets, _gsm7_segments(text))
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    if units <= UCS2_SINGLE:
        return BodyInfo(Encoding.UCS2, units, 1)
    if units == length:
        return BodyInfo(Encoding.UCS2, units, -(-units // UCS2_MULTI))
    return BodyInfo(Encoding.UCS2, *_ucs2_segments(text))


class _Unsure:
    """The fast check cannot decide; ask phonenumbers."""


UNSURE = _Unsure()
_TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)


def _desc_fits(desc: object, length: int) -> str | None:
    pattern: str | None = getattr(desc, "national_number_pattern", None)
    if desc is None or not pattern:
        return None
    lengths: tuple[int, ...] = getattr(desc, "possible_length", ())
    if lengths and length not in lengths:
        return None
    return pattern


@dataclass(frozen=True)
class _Region:
    """One region's validity rule, compiled from phonenumbers' own metadata."""

    leading_digits: re.Pattern[str] | None
    metadata: object
    _by_length: dict[int, re.Pattern[str] | None] = field(default_factory=dict)

    def valid(self, national: str) -> bool:
        """What phonenumbers' number-type check says: general pattern and some type match."""
        length = len(national)
        if length not in self._by_length:
            self._by_length[length] = self._compile(length)
        pattern = self._by_length[length]
        return pattern is not None and pattern.fullmatch(national) is not None

    def _compile(self, length: int) -> re.Pattern[str] | None:
        md = self.metadata
        general = _desc_fits(getattr(md, "general_desc", None), length)
        if general is None:
            return None
        names = list(_TYPE_DESCS)
        if not getattr(md, "same_mobile_and_fixed_line_pattern", False):
            names.append("mobile")
        types = [p for p in (_desc_fits(getattr(md, n, None), length) for n in names) if p]
        if not types:
            return None
        either = "|".join(f"(?:{p})" for p in types)
        return re.compile(f"(?=(?:{general})$)(?:{either})$")


@dataclass(frozen=True)
class _CallingCode:
    """How phonenumbers parses and validates numbers of one country calling code."""

    national_prefix: re.Pattern[str] | None
    regions: tuple[_Region, ...]


_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


@functools.cache
def _calling_code(code: int) -> _CallingCode | None:
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
    if not regions or phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY in regions:
        return None
    compiled = []
    for region in regions:
        md = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
        if md is None:
            return None
        leading = re.compile(md.leading_digits) if md.leading_digits else None
        compiled.append(_Region(leading, md))
    main = phonenumbers.PhoneMetadata.metadata_for_region(regions[0], None)
    prefix = main.national_prefix_for_parsing if main is not None else None
    return _CallingCode(re.compile(prefix) if prefix else None, tuple(compiled))


def fast_destination(value: str) -> str | _Unsure | None:
    """The E.164 form of `value`, None if invalid, or `UNSURE`: phonenumbers' strict rule,
    precompiled per calling code, for plain ``+`` and ASCII digits with nothing to strip.
    """
    digits = value[1:]
    if (
        value[:1] != "+"
        or not 3 <= len(digits) <= 15
        or not digits.isdigit()
        or not digits.isascii()
        or digits[0] == "0"
    ):
        return UNSURE
    for size in (1, 2, 3):
        code = _CODES.get(digits[:size])
        if code is not None:
            break
    else:
        return UNSURE
    national = digits[size:]
    rule = _calling_code(code)
    if rule is None or len(national) < 2 or national[0] == "0":
        return UNSURE
    if rule.national_prefix is not None and rule.national_prefix.match(national):
        return UNSURE
    if len(rule.regions) == 1:
        return value if rule.regions[0].valid(national) else None
    for region in rule.regions:
        if region.leading_digits is not None:
            if region.leading_digits.match(national):
                return value if region.valid(national) else None
        elif region.valid(national):
            return value
    return None


def slow_destination(value: str, *, strict: bool = True) -> str | None:
    """The E.164 form of `value` by phonenumbers itself, or None if not valid."""
    if not value.startswith("+") or len(value) > 16 or not value[1:].isdigit():
        return None
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    ok = phonenumbers.is_valid_number(number) if strict else phonenumbers.is_possible_number(number)
    if not ok:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_destination(value: str, *, strict: bool = True) -> str | None:
    """The E.164 form of `value`, or None if it is not a valid international number."""
    if strict:
        fast = fast_destination(value)
        if not isinstance(fast, _Unsure):
            return fast
    return _slow_cached(value, strict)


@functools.lru_cache(maxsize=65536)
def _slow_cached(value: str, strict: bool) -> str | None:
    return slow_destination(value, strict=strict)


@functools.lru_cache(maxsize=4096)
def sender_id_problem(value: str) -> str | None:
    """Why `value` is not a usable sender id, or None."""
    digits = value.removeprefix("+")
    if digits.isdigit() and digits.isascii():
        if len(digits) > 15:
            return "a numeric sender id has at most 15 digits"
        return None
    if value.startswith("+"):
        return "a sender id starting with + must be all digits"
    if not value.strip():
        return "sender id must not be blank"
    if len(value) > 11:
        return "an alphanumeric sender id has at most 11 characters"
    if not all(ch in GSM7_BASIC and ch not in "\r\n" for ch in value):
        return "an alphanumeric sender id must use GSM 03.38 basic characters"
    return None


def validate_message(
    raw: object,
    rules: Rules,
    *,
    customer_id: str | None = None,
    path: str = "",
    delivery: Delivery = NO_DELIVERY,
    now: float | None = None,
) -> ValidMessage:
    """Validate one message; `customer_id` is the authenticated customer, if any."""
    message = _accept(raw, rules, customer_id, delivery)
    if message is not None:
        return message
    out = _Collector(path)
    message = _check(raw, rules, customer_id, out, delivery, time.time() if now is None else now)
    if out.errors or message is None:
        raise ValidationFailed(out.errors)
    return message


def validate_batch(
    raw: object,
    rules: Rules,
    *,
    customer_id: str | None = None,
    delivery: Delivery = NO_DELIVERY,
    now: float | None = None,
) -> list[ValidMessage]:
    """Validate a batch body ``{"messages": [...]}``; all or nothing."""
    now = time.time() if now is None else now
    out = _Collector("")
    if not isinstance(raw, Mapping):
        out.add("", "type", "the body must be a JSON object")
        raise ValidationFailed(out.errors)
    for name in raw:
        if name != "messages":
            out.add(str(name), "unknown_field", "unknown field")
    items = raw.get("messages")
    if not isinstance(items, list):
        out.add(
            "messages", "type" if "messages" in raw else "required", "messages must be a list of messages"
        )
        raise ValidationFailed(out.errors)
    if not items:
        out.add("messages", "empty", "a batch needs at least one message")
    if len(items) > rules.max_batch:
        out.add("messages", "too_many", f"a batch holds at most {rules.max_batch} messages")
        raise ValidationFailed(out.errors)
    valid: list[ValidMessage] = []
    for index, item in enumerate(items):
        message = _accept(item, rules, customer_id, delivery)
        if message is None:
            sub = _Collector(f"messages[{index}]")
            message = _check(item, rules, customer_id, sub, delivery, now)
            out.errors.extend(sub.errors)
        if message is not None:
            valid.append(message)
    if out.errors:
        raise ValidationFailed(out.errors)
    return valid


def _reference_ok(value: object, limit: int) -> bool:
    return type(value) is str and 0 < len(value) <= limit and _REFERENCE.fullmatch(value) is not None


def _accept(
    raw: object, rules: Rules, customer_id: str | None, delivery: Delivery = NO_DELIVERY
) -> ValidMessage | None:
    """The common case in one pass: a clean message, or None to let `_check` explain why not.

    It accepts only what `_check` accepts, with the same result; anything unusual (a
    missing or mistyped field, a delivery option, any problem at all) goes to `_check`.
    """
    if (
        type(raw) is not dict
        or not raw.keys() <= MESSAGE_FIELDS
        or not raw.keys().isdisjoint(_DELIVERY_OPTIONS)
    ):
        return None
    get = raw.get
    destination, sender, body = get("destination"), get("sender_id"), get("body")
    if type(destination) is not str or type(sender) is not str or type(body) is not str:
        return None
    if not body or "\x00" in body or sender_id_problem(sender) is not None:
        return None
    normalised = normalise_destination(destination, strict=rules.strict_numbers)
    if normalised is None:
        return None
    info = body_info(body)
    if info.segments > rules.max_segments:
        return None
    customer = get("customer_id")
    if customer is None:
        if customer_id is None:
            return None
        customer = customer_id
    elif (
        type(customer) is not str
        or _CUSTOMER.fullmatch(customer) is None
        or (customer_id is not None and customer != customer_id)
    ):
        return None
    traffic = get("traffic_class")
    if traffic is None:
        traffic = rules.default_traffic_class
    elif type(traffic) is not str or traffic not in rules.traffic_classes:
        return None
    client_ref, key = get("client_ref"), get("idempotency_key")
    if client_ref is not None and not _reference_ok(client_ref, rules.max_client_ref):
        return None
    if key is not None and not _reference_ok(key, rules.max_idempotency_key):
        return None
    return ValidMessage(
        customer,
        traffic,
        normalised,
        sender,
        body,
        info.encoding,
        info.segments,
        client_ref,
        key,
        delivery.default_callback_url,
    )


def _text(raw: Mapping[str, object], name: str, out: _Collector, *, required: bool) -> str | None:
    if name not in raw or raw[name] is None:
        if required:
            out.add(name, "required", "this field is required")
        return None
    value = raw[name]
    if not isinstance(value, str):
        out.add(name, "type", "must be a string")
        return None
    return value


def is_loopback_host(host: str) -> bool:
    """Whether `host` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def callback_url_problem(value: str, rules: Rules) -> str | None:
    """Why `value` is not a usable callback URL, or None."""
    if len(value) > rules.max_callback_url:
        return f"a callback URL has at most {rules.max_callback_url} characters"
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "must be an absolute https URL"
    if not host or parts.username is not None or parts.fragment:
        return "must be an absolute https URL with a host, no user info and no fragment"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and rules.allow_http_loopback_callbacks and is_loopback_host(host):
        return None
    return "must use https"


def parse_time(value: str) -> float | None:
    """Epoch seconds of an RFC 3339 time with an offset (``Z`` or ``+02:00``), or None."""
    if "T" not in value.upper():
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return None if when.tzinfo is None else when.timestamp()


def _schedule(
    raw: Mapping[str, object], rules: Rules, now: float, out: _Collector
) -> tuple[float | None, float | None]:
    """(expires_at, send_at) from ``validity`` and ``send_at``, each checked against the rules."""
    send_at: float | None = None
    text = _text(raw, "send_at", out, required=False)
    if text is not None:
        send_at = parse_time(text)
        if send_at is None:
            out.add(
                "send_at", "invalid", "must be an RFC 3339 time with an offset, e.g. 2030-01-02T03:04:05Z"
            )
        elif send_at > now + rules.max_schedule_ahead:
            out.add("send_at", "too_far", f"must be at most {rules.max_schedule_ahead:g} s ahead")
            send_at = None
        else:
            send_at = max(send_at, now)
    expires_at: float | None = None
    text = _text(raw, "validity", out, required=False)
    if text is not None:
        start = send_at if send_at is not None else now
        when = parse_time(text)
        if when is None:
            try:
                seconds = parse_duration(text)
            except ValueError:
                out.add(
                    "validity",
                    "invalid",
                    "must be a duration such as 90s, 30m or 2h, or an RFC 3339 time with an offset",
                )
                return None, send_at
            when = start + seconds
        if when <= start:
            out.add("validity", "in_past", "must end after the message is sent")
        elif when - start > rules.max_validity:
            out.add("validity", "too_long", f"must be at most {rules.max_validity:g} s")
        else:
            expires_at = when
    return expires_at, send_at


def _check(
    raw: object,
    rules: Rules,
    customer_id: str | None,
    out: _Collector,
    delivery: Delivery = NO_DELIVERY,
    now: float | None = None,
) -> ValidMessage | None:
    if not isinstance(raw, Mapping):
        out.add("", "type", "a message must be a JSON object")
        return None
    for name in raw:
        if name not in MESSAGE_FIELDS:
            out.add(str(name), "unknown_field", "unknown field")

    destination = _text(raw, "destination", out, required=True)
    normalised: str | None = None
    if destination is not None:
        normalised = normalise_destination(destination, strict=rules.strict_numbers)
        if normalised is None:
            out.add("destination", "invalid_number", "must be a valid E.164 number such as +4915112345678")

    sender = _text(raw, "sender_id", out, required=True)
    if sender is not None:
        problem = sender_id_problem(sender)
        if problem:
            out.add("sender_id", "invalid_sender_id", problem)

    body = _text(raw, "body", out, required=True)
    info: BodyInfo | None = None
    if body is not None:
        if not body:
            out.add("body", "empty", "body must not be empty")
        elif "\x00" in body:
            out.add("body", "invalid_character", "body must not contain NUL")
        else:
            info = body_info(body)
            if info.segments > rules.max_segments:
                out.add(
                    "body",
                    "too_many_segments",
                    f"body needs {info.segments} {info.encoding.value} segments, "
                    f"at most {rules.max_segments} allowed",
                )

    customer = _text(raw, "customer_id", out, required=customer_id is None)
    if customer is not None:
        if not _CUSTOMER.fullmatch(customer):
            out.add("customer_id", "invalid", "must be 1-64 of A-Z a-z 0-9 . _ -")
        elif customer_id is not None and customer != customer_id:
            out.add("customer_id", "forbidden", "does not match the authenticated customer")
    customer = customer or customer_id

    traffic = _text(raw, "traffic_class", out, required=False)
    if traffic is not None and traffic not in rules.traffic_classes:
        out.add("traffic_class", "unknown", f"must be one of {', '.join(sorted(rules.traffic_classes))}")
    traffic = traffic or rules.default_traffic_class

    client_ref = _text(raw, "client_ref", out, required=False)
    if client_ref is not None and not (
        0 < len(client_ref) <= rules.max_client_ref and _REFERENCE.fullmatch(client_ref)
    ):
        out.add(
            "client_ref",
            "invalid",
            f"must be 1-{rules.max_client_ref} printable ASCII characters without spaces",
        )

    key = _text(raw, "idempotency_key", out, required=False)
    if key is not None and not (0 < len(key) <= rules.max_idempotency_key and _REFERENCE.fullmatch(key)):
        out.add(
            "idempotency_key",
            "invalid",
            f"must be 1-{rules.max_idempotency_key} printable ASCII characters without spaces",
        )

    callback = _text(raw, "callback_url", out, required=False)
    if callback is not None:
        problem = callback_url_problem(callback, rules)
        if problem:
            out.add("callback_url", "invalid", problem)
        elif not delivery.can_sign:
            out.add("callback_url", "no_secret", "no webhook secret is configured for this customer")
    expires_at, send_at = _schedule(raw, rules, time.time() if now is None else now, out)

    if out.errors or normalised is None or sender is None or body is None or info is None or customer is None:
        return None
    return ValidMessage(
        customer_id=customer,
        traffic_class=traffic,
        destination=normalised,
        sender_id=sender,
        body=body,
        encoding=info.encoding,
        segments=info.segments,
        client_ref=client_ref,
        idempotency_key=key,
        callback_url=callback or delivery.default_callback_url,
        expires_at=expires_at,
        send_at=send_at,
    )
